"""The list: messy CSVs in, suppressions kept, spreadsheet-safe CSVs out."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from newsletter.cli import cli
from newsletter.store import Store
from newsletter.store import subscribers as ops
from newsletter.store.csvio import CsvError, export_csv, import_csv
from newsletter.store.schema import subscriber_events


def write_csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def statuses(store: Store) -> dict[str, str]:
    with store.engine.connect() as conn:
        return {s.email.lower(): s.status for s in ops.iter_subscribers(conn)}


def test_messy_csv_bom_semicolons_quoted_commas_blank_lines(store: Store, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "messy.csv",
        "\ufeffName;E-mail;Town\n"
        '"Lovelace; Ada";ada@example.com;Durham\n'
        "\n"
        ";;\n"
        'Bert;bert@example.org;"Stoke, on Trent"\n',
    )
    report = import_csv(store, path)
    assert (report.added, len(report.invalid)) == (2, 0)
    with store.engine.connect() as conn:
        ada = ops.find(conn, "ada@example.com")
        bert = ops.find(conn, "bert@example.org")
    assert ada.name == "Lovelace; Ada"
    assert bert.attributes == {"Town": "Stoke, on Trent"}


def test_comma_csv_with_quoted_commas(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "list.csv", 'email,name\n"cath@example.net","Jones, Cath"\n')
    assert import_csv(store, path).added == 1
    with store.engine.connect() as conn:
        assert ops.find(conn, "cath@example.net").name == "Jones, Cath"


def test_file_without_email_column_is_an_error_and_changes_nothing(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "names.csv", "name,town\nAda,Durham\n")
    with pytest.raises(CsvError, match="no email column"):
        import_csv(store, path)
    assert statuses(store) == {}


def test_unreadable_file_changes_nothing(store: Store, tmp_path: Path) -> None:
    rows = "".join(f"reader{n}@example.com,Reader\n" for n in range(2500))
    path = tmp_path / "broken.csv"
    path.write_bytes(b"email,name\n" + rows.encode() + b"bad\xff\xfe@example.com,Oops\n")
    with pytest.raises(CsvError, match="not UTF-8"):
        import_csv(store, path)
    assert statuses(store) == {}, "a file that fails halfway must not leave half an import"
    with pytest.raises(CsvError, match="cannot be read"):
        import_csv(store, tmp_path / "missing.csv")


def test_bad_rows_are_reported_by_row_value_and_reason_and_good_rows_kept(store: Store, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "list.csv", "email,name\nada@example.com,Ada\nnot-an-address,Bad\n,Empty\nbert@example.org,Bert\n")
    report = import_csv(store, path)
    assert report.added == 2
    assert [(b.row, b.value) for b in report.invalid] == [(3, "not-an-address"), (4, "")]
    assert "@" in report.invalid[0].reason or "sign" in report.invalid[0].reason


def test_duplicates_by_case_merge_within_the_file_and_against_the_store(store: Store, tmp_path: Path) -> None:
    with store.begin() as conn:
        ops.add(conn, "ada@example.com", "Ada")
    path = write_csv(tmp_path / "list.csv", "email,name,town\nADA@Example.com,,Durham\nbert@example.org,Bert,\nBERT@example.org,,Stoke\n")
    report = import_csv(store, path)
    assert (report.added, report.updated) == (1, 1)
    with store.engine.connect() as conn:
        ada = ops.find(conn, "Ada@EXAMPLE.com")
        bert = ops.find(conn, "bert@example.org")
        assert ops.counts(conn)["active"] == 2
    assert (ada.email, ada.name, ada.attributes) == ("ada@example.com", "Ada", {"town": "Durham"})
    assert (bert.name, bert.attributes) == ("Bert", {"town": "Stoke"})


def test_import_never_reactivates_unsubscribed(store: Store, tmp_path: Path) -> None:
    with store.begin() as conn:
        ops.add(conn, "ada@example.com")
        ops.unsubscribe(conn, "ada@example.com", "clicked unsubscribe")
        bounced, _ = ops.add(conn, "bert@example.org")
        ops.set_status(conn, bounced.id, "bounced", "SendGrid bounce")
    path = write_csv(tmp_path / "list.csv", "email\nAda@example.com\nbert@example.org\ncath@example.net\n")
    report = import_csv(store, path)
    assert (report.added, report.suppressed) == (1, 2)
    assert statuses(store) == {"ada@example.com": "unsubscribed", "bert@example.org": "bounced", "cath@example.net": "active"}


def test_reimport_after_remove_keeps_the_unsubscribe(store: Store, tmp_path: Path, store_settings) -> None:
    path = write_csv(tmp_path / "list.csv", "email\nada@example.com\nbert@example.org\n")
    runner = CliRunner()
    assert runner.invoke(cli, ["subscribers", "import", str(path)]).exit_code == 0
    result = runner.invoke(cli, ["subscribers", "remove", "ADA@example.com"])
    assert result.exit_code == 0 and "unsubscribed" in result.output
    result = runner.invoke(cli, ["subscribers", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert statuses(store)["ada@example.com"] == "unsubscribed"
    listed = runner.invoke(cli, ["subscribers", "list"]).output
    assert "bert@example.org" in listed and "ada@example.com" not in listed
    assert "ada@example.com" in runner.invoke(cli, ["subscribers", "list", "--status", "unsubscribed"]).output


def test_removing_an_unknown_address_keeps_it_as_a_suppression(store: Store, tmp_path: Path) -> None:
    with store.begin() as conn:
        ops.unsubscribe(conn, "never@example.com", "asked by email")
    import_csv(store, write_csv(tmp_path / "list.csv", "email\nnever@example.com\n"))
    assert statuses(store) == {"never@example.com": "unsubscribed"}


def test_add_refuses_to_reactivate_but_the_subscribers_own_request_does(store: Store, store_settings) -> None:
    runner = CliRunner()
    runner.invoke(cli, ["subscribers", "add", "ada@example.com", "--name", "Ada"])
    runner.invoke(cli, ["subscribers", "remove", "ada@example.com"])
    result = runner.invoke(cli, ["subscribers", "add", "ada@example.com"])
    assert result.exit_code == 1 and "stays so" in result.output
    assert statuses(store)["ada@example.com"] == "unsubscribed"
    result = runner.invoke(cli, ["subscribers", "add", "ada@example.com", "--resubscribe"])
    assert result.exit_code == 0 and statuses(store)["ada@example.com"] == "active"
    with store.engine.connect() as conn:
        history = conn.execute(select(subscriber_events.c.status).order_by(subscriber_events.c.id)).scalars().all()
    assert history == ["active", "unsubscribed", "active"]


def test_dry_run_changes_nothing(store: Store, tmp_path: Path) -> None:
    report = import_csv(store, write_csv(tmp_path / "list.csv", "email\nada@example.com\n"), dry_run=True)
    assert report.added == 1 and statuses(store) == {}


def test_export_neutralises_formulas_and_round_trips(store: Store, tmp_path: Path, database_url: str) -> None:
    source = write_csv(
        tmp_path / "list.csv",
        'email,name,note\nada@example.com,"=HYPERLINK(""http://x"")",+1\nbert@example.org,@SUM(A1),-minus\ncath@example.net,Cath,plain\n'
        "dev@example.com,'Dev,''+1\n",  # a value that starts with ' before +: kept as it is
    )
    import_csv(store, source)
    exported = tmp_path / "export.csv"
    assert export_csv(store, exported) == 4
    with exported.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    cells = [cell for row in rows for cell in row.values()]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert rows[0]["name"] == "'=HYPERLINK(\"http://x\")"

    # Import the export into a fresh list: the same people, names and notes come back.
    with store.begin() as conn:
        before = {s.email: (s.name, s.attributes.get("note")) for s in ops.iter_subscribers(conn)}
        conn.execute(subscriber_events.delete())
        from newsletter.store.schema import subscribers as table

        conn.execute(table.delete())
    import_csv(store, exported)
    with store.engine.connect() as conn:
        after = {s.email: (s.name, s.attributes.get("note")) for s in ops.iter_subscribers(conn)}
    assert after == before
    assert after["dev@example.com"] == ("'Dev", "'+1")


def test_cli_import_prints_a_summary_and_bad_rows(store_settings, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "list.csv", "email\nada@example.com\nnope\n")
    result = CliRunner().invoke(cli, ["subscribers", "import", str(path)])
    assert result.exit_code == 0
    assert "row 3" in result.output and "'nope'" in result.output
    assert "added" in result.output and "invalid" in result.output
    result = CliRunner().invoke(cli, ["subscribers", "count"])
    assert "active: 1" in result.output


def test_cli_import_of_a_file_without_email_column_fails_clearly(store_settings, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "list.csv", "name\nAda\n")
    result = CliRunner().invoke(cli, ["subscribers", "import", str(path)])
    assert result.exit_code == 1 and "no email column" in result.output and "Traceback" not in result.output


def test_the_sample_list_imports_cleanly(store: Store, project: Path) -> None:
    report = import_csv(store, project / "subscribers" / "sample.csv")
    assert report.added >= 24 and not report.invalid
    domains = {e.split("@")[1] for e in statuses(store)}
    assert domains == {"example.com", "example.org", "example.net"}
