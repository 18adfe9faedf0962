"""Hostile data at the door: the same row errors on SQLite and PostgreSQL, the good rows kept, no traceback."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import Settings
from newsletter.store import Store
from newsletter.store import subscribers as ops
from newsletter.store.csvio import CsvError, import_csv

from .conftest import statuses_in, write_csv

ENCODED_WORD = "=?utf-8?b?SGFja2Vk?="  # decodes to "Hacked"; must stay this literal text


def names(store: Store) -> dict[str, str]:
    with store.engine.connect() as conn:
        return {s.email: s.name for s in ops.iter_subscribers(conn)}


def test_hostile_rows_are_row_errors_and_the_good_rows_are_kept(store: Store, tmp_path: Path) -> None:
    long_local = "x" * 300
    rows = [
        "email,name,note",
        "good1@example.com,Ada,fine",  # 2
        "nul@example.com,A\x00da,",  # 3
        "bell@example.com,Ada\x07,",  # 4
        f"long@example.com,{'n' * 201},",  # 5
        f"fits@example.com,{'n' * 200},",  # 6
        f"{long_local}@example.com,Long,",  # 7
        f"word@example.com,{ENCODED_WORD},",  # 8
        "attr@example.com,Bert,bad\x00value",  # 9
        "ädä@example.com,Umlaut,",  # 10
        "Ada@Bücher.Example,IDN,",  # 11
        'break@example.com,"Line\r\nbreak",',  # 12-13
        "good2@example.org,Cath,fine",  # 14
    ]
    report = import_csv(store, write_csv(tmp_path / "hostile.csv", "\n".join(rows) + "\n"))
    errors = {bad.row: bad.reason for bad in report.invalid}
    assert sorted(errors) == [3, 4, 5, 7, 9, 10]
    assert "U+0000" in errors[3] and "U+0007" in errors[4] and "name" in errors[3]
    assert "201 characters" in errors[5] and "at most 200" in errors[5]
    assert "characters long" in errors[7] or "too long" in errors[7]
    assert "U+0000" in errors[9] and "note" in errors[9]
    assert "before the @" in errors[10]
    assert [note.row for note in report.cleaned] == [12]
    assert names(store) == {
        "good1@example.com": "Ada", "fits@example.com": "n" * 200, "word@example.com": ENCODED_WORD,
        "Ada@xn--bcher-kva.example": "IDN", "break@example.com": "Line break", "good2@example.org": "Cath",
    }


def test_the_cli_reports_hostile_rows_in_one_line_each_without_a_traceback(store_settings: Settings, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "list.csv",
                     f"email,name\nada@example.com,{'n' * 250}\nbert@example.org,[red]Bert\x00[/red]\ncath@example.net,Cath\n")
    result = CliRunner().invoke(cli, ["subscribers", "import", str(path)])
    assert result.exit_code == 0 and "Traceback" not in result.output
    assert "row 2" in result.output and "250 characters" in result.output
    assert "row 3" in result.output and "U+0000" in result.output
    assert "active: 1" in CliRunner().invoke(cli, ["subscribers", "count"]).output


@pytest.mark.parametrize("text", [
    'email,name\nada@example.com,"Ada\nbert@example.org,Bert\ncath@example.net,Cath\n',  # never closed
    'email,name\nada@example.com,"Ada\nbert@example.org,Bert"\ncath@example.net,Cath\n',  # closed a row later
])
def test_an_unterminated_quote_is_a_row_error_not_a_silent_merge(store: Store, tmp_path: Path, text: str) -> None:
    report = import_csv(store, write_csv(tmp_path / "list.csv", text))
    assert [bad.row for bad in report.invalid] == [2]
    assert "quote" in report.invalid[0].reason and "lines 3" in report.invalid[0].reason
    assert "ada@example.com" not in statuses_in(store)
    assert not [name for name in names(store).values() if "@" in name], "no row may be swallowed into a name"


def test_a_quote_that_swallows_the_rest_of_a_long_file_is_that_rows_error_naming_the_lines(store: Store, tmp_path: Path) -> None:
    rows = "".join(f"reader{n}@example.com,Reader {n}\n" for n in range(6000))
    path = write_csv(tmp_path / "list.csv", f'email,name\nada@example.com,Ada\nbert@example.org,"Bert\n{rows}')
    report = import_csv(store, path)
    assert [(note.row, note.value) for note in report.invalid] == [(3, "bert@example.org")]
    assert "lines 4–6003 were read into it" in report.invalid[0].reason
    assert statuses_in(store) == {"ada@example.com": "active"}  # none of the swallowed rows, and the good row kept


def test_a_quote_never_closed_on_the_last_row_is_that_rows_error(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "list.csv", 'email,name,city\nq1@example.com,O"Brien,x\nq2@example.com,"Unterminated name,London\n')
    report = import_csv(store, path)
    assert [(note.row, "never closed" in note.reason) for note in report.invalid] == [(3, True)]
    assert names(store) == {"q1@example.com": 'O"Brien'}  # a stray quote inside a value is no unclosed one


def test_a_value_too_long_for_an_export_to_carry_back_is_that_rows_error(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "list.csv", f"email,name,note\nok@example.com,A,x\nbig@example.com,B,={'A' * 131071}\n")
    report = import_csv(store, path)
    assert [(note.row, note.value) for note in report.invalid] == [(3, "big@example.com")]
    assert "10000" in report.invalid[0].reason.replace(",", "") and statuses_in(store) == {"ok@example.com": "active"}


def test_a_column_named_twice_is_refused_before_any_value_is_lost(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "list.csv", "email,name,city,city\nada@example.com,Ada,A,B\n")
    with pytest.raises(CsvError, match=r"column 4 \('city'\) repeats column 3"):
        import_csv(store, path)
    assert statuses_in(store) == {}


def test_cells_past_the_header_are_reported_not_silently_dropped(store: Store, tmp_path: Path) -> None:
    report = import_csv(store, write_csv(tmp_path / "list.csv", "email,name\na@example.com,Smith, John\n"))
    assert report.added == 1 and [(n.row, "3 cells" in n.reason) for n in report.cleaned] == [(2, True)]


@pytest.mark.parametrize("header", ["email", "EMAIL", "e-mail", "E-mail Address", "Email address", "mail", "E-Mail"])
def test_the_usual_email_headers_are_found_in_any_case(store: Store, tmp_path: Path, header: str) -> None:
    report = import_csv(store, write_csv(tmp_path / "list.csv", f"Name,{header}\nAda,ada@example.com\n"))
    assert report.added == 1 and names(store) == {"ada@example.com": "Ada"}


def test_rows_that_differ_only_in_case_are_reported_as_merged(store: Store, store_settings: Settings, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "list.csv", "email,name\nada@example.com,Ada\nADA@EXAMPLE.COM,Ada L\nada@example.com,\n")
    report = import_csv(store, path)
    assert report.added == 1 and [(m.row, "row 2" in m.reason) for m in report.merged] == [(3, True), (4, True)]
    assert "only in case" in report.merged[0].reason
    assert names(store) == {"ada@example.com": "Ada L"}
    result = CliRunner().invoke(cli, ["subscribers", "import", str(path)])
    assert "row 3" in result.output and "merged" in result.output


def test_add_and_import_store_the_same_normalised_address(store: Store, store_settings: Settings, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["subscribers", "add", "Ada@Bücher.Example", "--name", "Ada"])
    assert result.exit_code == 0, result.output
    report = import_csv(store, write_csv(tmp_path / "list.csv", "email\nada@XN--BCHER-KVA.example\n"))
    assert (report.added, report.unchanged) == (0, 1)
    assert statuses_in(store) == {"Ada@xn--bcher-kva.example": "active"}


@pytest.mark.parametrize(("name", "message"), [("Ada\x00", "U+0000"), ("n" * 201, "at most 200")])
def test_add_refuses_a_name_that_cannot_be_stored_in_one_line(store: Store, store_settings: Settings, name: str, message: str) -> None:
    result = CliRunner().invoke(cli, ["subscribers", "add", "ada@example.com", "--name", name])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert statuses_in(store) == {}


def test_a_name_like_an_encoded_word_reaches_the_reader_literally(store: Store, store_settings: Settings, tmp_path: Path) -> None:
    from newsletter.build import build

    runner = CliRunner()
    assert runner.invoke(cli, ["subscribers", "add", "ada@example.com", "--name", ENCODED_WORD]).exit_code == 0
    assert build(store_settings).ok
    assert runner.invoke(cli, ["queue", "2017-03-06-happy-families-lets-talk-about-new-labour", "--at", "now", "--yes"]).exit_code == 0
    assert runner.invoke(cli, ["scheduler", "--once"]).exit_code == 0
    [path] = store_settings.outbox_path.glob("send-*/*.eml")
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert message["To"].addresses[0].display_name == ENCODED_WORD


def test_an_idn_address_suppressed_before_the_upgrade_stays_one_suppressed_person(
        database_url: str, settings: Settings, tmp_path: Path) -> None:
    import dataclasses

    from alembic import command
    from alembic.config import Config
    from sqlalchemy import insert

    from newsletter.store import open_store
    from newsletter.store.db import MIGRATIONS, create_database_engine
    from newsletter.store.schema import subscribers, utcnow

    engine = create_database_engine(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0002")
        now = utcnow()
        conn.execute(insert(subscribers), [  # as the earlier version keyed them: by the Unicode domain
            dict(email=email, email_key=email.casefold(), name="", attributes={}, status=status, source="old version",
                 created_at=now, updated_at=now, status_changed_at=now)
            for email, status in (("Ada@bücher.example", "unsubscribed"), ("bert@example.org", "active"))
        ])
    engine.dispose()
    store = open_store(dataclasses.replace(settings, database_url=database_url, secret="s"))
    report = import_csv(store, write_csv(tmp_path / "list.csv", "email\nada@xn--bcher-kva.example\nADA@Bücher.Example\n"))
    assert report.suppressed == 1 and report.added == 0
    assert statuses_in(store) == {"Ada@xn--bcher-kva.example": "unsubscribed", "bert@example.org": "active"}
    store.dispose()


def test_a_repeat_in_a_later_chunk_is_reported_merged_and_counted_once(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from newsletter.store import csvio

    monkeypatch.setattr(csvio, "CHUNK", 2)  # as a repeat 1000 rows further down a big file
    path = write_csv(tmp_path / "list.csv", "email,name\nada@example.com,Ada\nbert@example.org,\nADA@example.com,Ada L\n"
                                            "cath@example.net,\nBERT@example.org,\n")
    report = import_csv(store, path)
    assert [note.row for note in report.merged] == [4, 6]
    assert (report.added, report.updated, report.unchanged, report.rows) == (3, 0, 0, 5)
    assert names(store)["ada@example.com"] == "Ada L"


def test_a_sep_line_before_the_header_declares_the_delimiter(store: Store, tmp_path: Path) -> None:
    report = import_csv(store, write_csv(tmp_path / "list.csv", "\ufeffsep=;\nE-mail Address;Name\nada@example.com;Lovelace, Ada\n"))
    assert report.added == 1 and names(store) == {"ada@example.com": "Lovelace, Ada"}


def test_add_says_when_it_made_line_breaks_in_a_name_spaces(store: Store, store_settings: Settings) -> None:
    result = CliRunner().invoke(cli, ["subscribers", "add", "ada@example.com", "--name", "Ada\r\nLovelace"])
    assert result.exit_code == 0 and result.output.strip() == (
        "Added ada@example.com as 'Ada Lovelace': line breaks in the name were made spaces")
    assert names(store) == {"ada@example.com": "Ada Lovelace"}
    assert CliRunner().invoke(cli, ["subscribers", "add", "bert@example.org", "--name", "Bert"]).output.strip() == "Added bert@example.org"


def test_a_quoted_value_with_a_line_break_and_an_address_inside_is_text_not_a_swallowed_row(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "list.csv", 'email,name\r\na1@example.com,"Evil\r\nBcc: victim@example.org"\r\na2@example.com,B\r\n')
    report = import_csv(store, path)
    assert report.invalid == [] and report.added == 2
    assert names(store)["a1@example.com"] == "Evil Bcc: victim@example.org"  # one line, literal text
