"""A list moved by export and import keeps every suppression: SQLite → PostgreSQL → SQLite."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import email
import email.policy
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, update

from newsletter.build import build
from newsletter.cli import cli
from newsletter.config import Settings
from newsletter.store import Store, open_store
from newsletter.store import signups
from newsletter.store import subscribers as ops
from newsletter.store.csvexport import export_csv
from newsletter.store.csvio import import_csv
from newsletter.store.schema import subscriber_events, subscribers, utcnow

from .conftest import statuses_in, write_csv

SECRET = "test-secret-for-signing-links"


def fill(store: Store) -> None:
    """One subscriber of every kind, each status set from a different place."""
    with store.begin() as conn:
        ops.add(conn, "ada@example.com", "Ada Lovelace", source="added by the editor")
        conn.execute(update(subscribers).where(subscribers.c.email == "ada@example.com").values(attributes={"town": "Durham"}))
        bert, _ = ops.add(conn, "Bert@Example.org", "Bert")
        ops.set_status(conn, bert.id, "unsubscribed", "unsubscribe link")
        cath, _ = ops.add(conn, "cath@example.net", "=Cath")
        ops.set_status(conn, cath.id, "bounced", "SendGrid bounce event ev-1")
        dev, _ = ops.add(conn, "dev@example.com", "Dev")
        ops.set_status(conn, dev.id, "complained", "SendGrid spamreport event ev-2")
        ops.suppress(conn, "never@example.com", "unsubscribed", "removed by the editor")
        # Signed up through the form, left, and came back: two consents and four status changes.
        fay = ops.add_pending(conn, "fay@example.com", "'=Fay", "signup form")
        signups.mark_confirmed(conn, signups.record(conn, fay.id, signups.SignupKind.CONFIRM, "https://blog.example/join",
                                                    "192.0.2.0", utcnow()).id, "192.0.2.0", utcnow())
        ops.activate(conn, fay.id, "confirmed signup")
        ops.unsubscribe(conn, "fay@example.com", "unsubscribe link in 2017-03-06-x")
        signups.mark_confirmed(conn, signups.record(conn, fay.id, signups.SignupKind.CONFIRM, "subscribe page",
                                                    "2001:db8::", utcnow()).id, "2001:db8::", utcnow())
        ops.resubscribe(conn, "fay@example.com", "confirmed signup")
        # Data from an older version, whose import kept a "status" column as an attribute.
        eve, _ = ops.add(conn, "eve@example.com", "Eve")
        ops.set_status(conn, eve.id, "unsubscribed", "unsubscribe link")
        conn.execute(update(subscribers).where(subscribers.c.id == eve.id)
                     .values(attributes={"status": "active", "Status": "active", "E-mail": "other@example.com"}))


def snapshot(store: Store) -> dict[str, tuple]:
    """Everything `subscribers show` prints of each subscriber, to the second."""
    def second(moment: dt.datetime | None) -> dt.datetime | None:
        return moment.replace(microsecond=0) if moment else None

    with store.engine.connect() as conn:
        return {
            s.email: (s.status, s.name, s.attributes, s.source, second(s.created_at), second(s.status_changed_at),
                      [(second(h.at), h.status, h.source) for h in ops.history(conn, s.id)],
                      [(second(c.requested_at), c.form, c.requested_ip, second(c.confirmed_at), c.confirmed_ip)
                       for c in signups.consents(conn, s.id)])
            for s in ops.iter_subscribers(conn)
        }


def store_at(settings: Settings, url: str) -> Store:
    return open_store(dataclasses.replace(settings, database_url=url, secret=SECRET))


def test_sqlite_to_postgresql_to_sqlite_keeps_every_status_name_attribute_and_origin(
        settings: Settings, postgres_url: str, tmp_path: Path) -> None:
    first = store_at(settings, f"sqlite:///{tmp_path / 'first.db'}")
    fill(first)
    before = snapshot(first)
    export_csv(first, tmp_path / "first.csv")

    second = store_at(settings, postgres_url)
    report = import_csv(second, tmp_path / "first.csv")
    assert (report.added, report.suppressions, report.invalid) == (2, 5, [])
    assert snapshot(second) == before
    export_csv(second, tmp_path / "second.csv")

    third = store_at(settings, f"sqlite:///{tmp_path / 'third.db'}")
    import_csv(third, tmp_path / "second.csv")
    assert snapshot(third) == before
    export_csv(third, tmp_path / "third.csv")
    assert (tmp_path / "third.csv").read_text() == (tmp_path / "first.csv").read_text()
    assert statuses_in(third) == {
        "ada@example.com": "active", "Bert@example.org": "unsubscribed", "cath@example.net": "bounced",
        "dev@example.com": "complained", "never@example.com": "unsubscribed", "eve@example.com": "unsubscribed",
        "fay@example.com": "active",
    }
    fay = snapshot(third)["fay@example.com"]
    assert [(status, source) for _, status, source in fay[6]] == [
        ("pending", "signup form"), ("active", "confirmed signup"), ("unsubscribed", "unsubscribe link in 2017-03-06-x"),
        ("active", "confirmed signup")]
    assert [(form, ip) for _, form, ip, _, _ in fay[7]] == [("https://blog.example/join", "192.0.2.0"), ("subscribe page", "2001:db8::")]
    assert fay[1] == "'=Fay"
    for store in (first, second, third):
        store.dispose()


def test_links_sent_from_the_old_store_unsubscribe_the_same_person_in_the_new_one(
        settings: Settings, postgres_url: str, tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from newsletter.tokens import Signer
    from newsletter.web.public import create_app

    first = store_at(settings, f"sqlite:///{tmp_path / 'first.db'}")
    with first.begin() as conn:  # ids with a gap, as a failed import leaves them on PostgreSQL
        now = utcnow()
        conn.execute(insert(subscribers).values(id=7, email="zed@example.com", email_key="zed@example.com", name="",
                                                attributes={}, status="active", source="test", created_at=now,
                                                updated_at=now, status_changed_at=now))
    fill(first)
    with first.engine.connect() as conn:
        old_ids = {s.email: s.id for s in ops.iter_subscribers(conn)}
    export_csv(first, tmp_path / "list.csv")
    second = store_at(settings, postgres_url)
    assert not import_csv(second, tmp_path / "list.csv").renumbered
    client = TestClient(create_app(dataclasses.replace(settings, database_url=postgres_url), second, SECRET))
    response = client.post(f"/unsubscribe?token={Signer(SECRET).token(old_ids['ada@example.com'], 'x')}",
                           content=b"List-Unsubscribe=One-Click")
    assert response.status_code == 200 and "ada@example.com" in response.text
    assert statuses_in(second)["ada@example.com"] == "unsubscribed"
    with second.begin() as conn:  # new subscribers after the move get fresh ids, on PostgreSQL too
        fresh, added = ops.add(conn, "new@example.com")
    assert added and fresh.id > max(old_ids.values())
    first.dispose()
    second.dispose()


def test_an_id_taken_in_a_non_empty_store_is_reported(store: Store, tmp_path: Path) -> None:
    with store.begin() as conn:
        taken, _ = ops.add(conn, "first@example.com")
    path = write_csv(tmp_path / "list.csv", f"email,subscriber_id\nother@example.com,{taken.id}\nthird@example.com,x\n")
    report = import_csv(store, path)
    assert [note.row for note in report.renumbered] == [2] and "belongs to another subscriber" in report.renumbered[0].reason
    assert [bad.row for bad in report.invalid] == [3]
    assert set(statuses_in(store)) == {"first@example.com", "other@example.com"}


def test_an_address_already_here_under_another_id_is_reported(store: Store, tmp_path: Path) -> None:
    with store.begin() as conn:
        x, _ = ops.add(conn, "x@example.com")
        y, _ = ops.add(conn, "y@example.com")
    path = write_csv(tmp_path / "list.csv", f"email,subscriber_id\ny@example.com,{x.id}\nx@example.com,{y.id}\n")
    report = import_csv(store, path)
    assert [note.row for note in report.renumbered] == [2, 3]
    assert f"is subscriber {y.id} here, not {x.id}" in report.renumbered[0].reason


def test_a_send_from_the_moved_list_reaches_only_the_active(settings: Settings, postgres_url: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    first = store_at(settings, f"sqlite:///{tmp_path / 'first.db'}")
    fill(first)
    export_csv(first, tmp_path / "list.csv")
    first.dispose()
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", postgres_url)
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    runner = CliRunner()
    result = runner.invoke(cli, ["subscribers", "import", str(tmp_path / "list.csv")])
    assert result.exit_code == 0, result.output
    assert build(dataclasses.replace(settings, database_url=postgres_url, secret=SECRET)).ok
    result = runner.invoke(cli, ["queue", "2017-03-06-happy-families-lets-talk-about-new-labour", "--at", "now", "--yes"])
    assert result.exit_code == 0, result.output
    assert runner.invoke(cli, ["scheduler", "--once"]).exit_code == 0
    sent = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["To"].addresses[0].addr_spec
            for p in settings.outbox_path.glob("send-*/*.eml")]
    assert sorted(sent) == ["ada@example.com", "fay@example.com"]


def test_imported_suppressions_suppress_and_active_rows_never_reactivate(store: Store, tmp_path: Path) -> None:
    with store.begin() as conn:
        ops.add(conn, "ada@example.com", "Ada")
        ops.unsubscribe(conn, ops.add(conn, "bert@example.org")[0].email, "unsubscribe link")
    path = write_csv(tmp_path / "list.csv", (
        "email,name,status,source,status_changed_at\n"
        "ada@example.com,Ada,Unsubscribed,unsubscribe link,2025-01-02T03:04:05+01:00\n"
        "bert@example.org,,active,,\n"
        "cath@example.net,Cath,bounced,,\n"
        "dev@example.com,Dev,,,\n"
    ))
    report = import_csv(store, path)
    assert (report.added, report.suppressions, report.suppressed, report.invalid) == (1, 2, 1, [])
    assert statuses_in(store) == {"ada@example.com": "unsubscribed", "bert@example.org": "unsubscribed",
                                  "cath@example.net": "bounced", "dev@example.com": "active"}
    with store.engine.connect() as conn:
        ada = ops.find(conn, "ada@example.com")
        assert ada is not None and (ada.source, ada.status_changed_at.isoformat()) == ("unsubscribe link", "2025-01-02T02:04:05")
        assert [h.status for h in ops.history(conn, ada.id)] == ["active", "unsubscribed"]
        cath = ops.find(conn, "cath@example.net")
        assert cath is not None and cath.source == "import of list.csv"
    again = import_csv(store, write_csv(tmp_path / "again.csv", "email,status\nada@example.com,active\ncath@example.net,active\n"))
    assert again.suppressed == 2 and statuses_in(store)["ada@example.com"] == "unsubscribed"


def test_a_status_column_that_is_not_a_status_is_a_row_error(store: Store, tmp_path: Path) -> None:
    report = import_csv(store, write_csv(tmp_path / "list.csv", "email,status\nada@example.com,VIP\nbert@example.org,active\n"))
    assert [(bad.row, "is not one of" in bad.reason) for bad in report.invalid] == [(2, True)]
    assert statuses_in(store) == {"bert@example.org": "active"}


def test_the_export_status_column_is_always_the_stored_status(store: Store, tmp_path: Path) -> None:
    with store.begin() as conn:
        eve, _ = ops.add(conn, "eve@example.com", "Eve")
        ops.set_status(conn, eve.id, "unsubscribed", "unsubscribe link")
        conn.execute(update(subscribers).where(subscribers.c.id == eve.id)
                     .values(attributes={"status": "active", "Status": "active", "source": "x", "Email": "other@example.com"}))
    export_csv(store, tmp_path / "out.csv")
    with (tmp_path / "out.csv").open(encoding="utf-8", newline="") as handle:
        header, row = list(csv.reader(handle))
    assert header[:7] == ["email", "name", "status", "source", "created_at", "status_changed_at", "subscriber_id"]
    assert row[:4] == ["eve@example.com", "Eve", "unsubscribed", "unsubscribe link"]


def test_export_header_cells_are_neutralised_and_excel_gets_a_bom(store: Store, store_settings: Settings, tmp_path: Path) -> None:
    import_csv(store, write_csv(tmp_path / "in.csv", 'email,"=HYPERLINK(""http://evil"")",@cmd\nada@example.com,1,2\n'))
    result = CliRunner().invoke(cli, ["subscribers", "export", str(tmp_path / "out.csv"), "--excel"])
    assert result.exit_code == 0, result.output
    raw = (tmp_path / "out.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    with (tmp_path / "out.csv").open(encoding="utf-8-sig", newline="") as handle:
        header, _ = list(csv.reader(handle))
    assert not [cell for cell in header if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert "'=HYPERLINK(\"http://evil\")" in header
    assert CliRunner().invoke(cli, ["subscribers", "export", str(tmp_path / "plain.csv")]).exit_code == 0
    assert (tmp_path / "plain.csv").read_bytes().startswith(b"email,")
    # And back: the attribute names come home unchanged.
    with store.begin() as conn:
        conn.execute(subscriber_events.delete())
        conn.execute(subscribers.delete())
    import_csv(store, tmp_path / "out.csv")
    with store.engine.connect() as conn:
        ada = ops.find(conn, "ada@example.com")
    assert ada is not None and ada.attributes == {'=HYPERLINK("http://evil")': "1", "@cmd": "2"}


def test_a_history_or_consent_cell_unlike_an_exports_is_a_row_error_and_the_rest_is_kept(store: Store, tmp_path: Path) -> None:
    def changes(*items: tuple[str, str, str]) -> str:
        return json.dumps([{"at": at, "status": status, "source": source} for at, status, source in items])

    joined = changes(("2025-01-01T00:00:00", "active", "signup form"))
    consent = {"requested_at": "2025-01-01T00:00:00", "form": "subscribe page", "requested_ip": "192.0.2.0",
               "confirmed_at": "2025-01-01T00:05:00", "confirmed_ip": "192.0.2.0"}
    rows = [
        ["email", "status", "status_history", "consent_records"],
        ["ada@example.com", "active", joined, json.dumps([consent])],  # 2
        ["bert@example.org", "active", "signed up at the fair", ""],  # 3
        ["cath@example.net", "active", changes(("2025-01-01T00:00:00", "VIP", "x")), ""],  # 4
        ["dev@example.com", "active", changes(("2025-01-01T00:00:00", "active", "nul\x00")), ""],  # 5
        ["eve@example.com", "active", changes(("yesterday", "active", "x")), ""],  # 6
        ["fay@example.com", "active", "", json.dumps([{**consent, "requested_ip": "1" * 65}])],  # 7
        ["gus@example.com", "active", "", json.dumps([{**consent, "confirmed_at": ""}])],  # 8
        ["hal@example.com", "unsubscribed", joined, ""],  # 9: the status was changed in a spreadsheet
    ]
    path = tmp_path / "list.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)
    report = import_csv(store, path)
    errors = {bad.row: bad.reason for bad in report.invalid}
    assert sorted(errors) == [3, 4, 5, 6, 7, 8]
    assert "status_history is not a list" in errors[3] and "'VIP'" in errors[4] and "U+0000" in errors[5]
    assert "not a date" in errors[6] and "at most 64" in errors[7] and "confirmed_at" in errors[8]
    assert statuses_in(store) == {"ada@example.com": "active", "hal@example.com": "unsubscribed"}
    with store.engine.connect() as conn:
        ada, hal = ops.find(conn, "ada@example.com"), ops.find(conn, "hal@example.com")
        assert ada is not None and hal is not None
        assert [(h.at.isoformat(), h.status, h.source) for h in ops.history(conn, ada.id)] == [
            ("2025-01-01T00:00:00", "active", "signup form")]
        assert [(c.form, c.confirmed_at.isoformat()) for c in signups.consents(conn, ada.id)] == [
            ("subscribe page", "2025-01-01T00:05:00")]
        assert [(h.status, h.source) for h in ops.history(conn, hal.id)] == [
            ("active", "signup form"), ("unsubscribed", "import of list.csv")]
