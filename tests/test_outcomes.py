"""One outcome per recipient: what real SMTP servers, lists and essays do to a send."""

from __future__ import annotations

import csv
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select

from newsletter.cli import cli
from newsletter.config import Settings
from newsletter.store import Store
from newsletter.store.schema import deliveries, subscribers, utcnow

from .smtp_server import SmtpServer

NEWEST = "2017-03-06-happy-families-lets-talk-about-new-labour"


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def add(store: Store, people: list[tuple[str, str]]) -> None:
    """Subscribers written straight into the store, as an earlier version may have let them in."""
    now = utcnow()
    with store.begin() as conn:
        conn.execute(insert(subscribers), [
            dict(email=email, email_key=email.casefold(), name=name, attributes={}, status="active", source="test",
                 created_at=now, updated_at=now, status_changed_at=now)
            for email, name in people
        ])


def outcomes(store: Store) -> dict[str, tuple[str, str]]:
    with store.engine.connect() as conn:
        return {row.email: (row.status, row.error or "") for row in conn.execute(
            select(subscribers.c.email, deliveries.c.status, deliveries.c.error)
            .join(deliveries, deliveries.c.subscriber_id == subscribers.c.id))}


@pytest.fixture
def scripted(store_settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    """A plain SMTP server without SMTPUTF8, the smtp provider pointed at it, retries one second apart."""
    from newsletter.build import build

    assert build(store_settings).ok
    server = SmtpServer().start()
    monkeypatch.setenv("NEWSLETTER_PROVIDER", "smtp")
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", server.url)
    monkeypatch.setenv("NEWSLETTER_RETRY_AFTER", "1")
    monkeypatch.setenv("NEWSLETTER_BATCH_SIZE", "4")
    try:
        yield server
    finally:
        server.stop()


def test_each_smtp_recipient_gets_the_outcome_the_server_gave(scripted: SmtpServer, store: Store) -> None:
    people = [f"r{n}@example.net" for n in range(10)]
    add(store, [(p, "") for p in people])
    recorder = scripted.recorder
    recorder.refuse_rcpt = {"r1@example.net": "550 5.1.1 no such user", "r6@example.net": "553 5.1.3 bad mailbox"}
    recorder.defer_rcpt = {"r2@example.net": 1, "r8@example.net": 1}
    recorder.refuse_data = {"r4@example.net": "554 5.7.1 rejected as spam"}
    recorder.drop_data = {"r5@example.net"}
    add(store, [("josé@example.net", "José")])  # no SMTPUTF8 here
    assert run("queue", NEWEST, "--at", "now", "--yes").exit_code == 0

    first = run("scheduler", "--once")
    assert first.exit_code == 0, first.output
    assert "Traceback" not in first.output
    got = outcomes(store)
    assert got["r1@example.net"] == ("failed", "RCPT TO refused: 550 5.1.1 no such user")
    assert got["r6@example.net"] == ("failed", "RCPT TO refused: 553 5.1.3 bad mailbox")
    assert got["r2@example.net"] == ("deferred", "RCPT TO refused: 451 4.7.1 try again later")
    assert got["r8@example.net"][0] == "deferred"
    assert got["r4@example.net"] == ("failed", "message refused: 554 5.7.1 rejected as spam")
    assert got["r5@example.net"][0] == "in_doubt" and "may have been delivered" in got["r5@example.net"][1]
    assert got["josé@example.net"] == ("failed", "the address has non-ASCII characters before the @ and the SMTP server "
                                                 "does not offer SMTPUTF8")
    for n in (0, 3, 7, 9):
        assert got[f"r{n}@example.net"] == ("sent", "")
    assert "Sent 4 message(s)" in first.output and "deferred 2" in first.output and "in doubt 1" in first.output
    for address in ("r1@", "r5@", "josé@"):
        assert address not in first.output, "no addresses in the scheduler's output"

    time.sleep(1.2)  # the retry is due
    second = run("scheduler", "--once")
    assert second.exit_code == 0, second.output
    got = outcomes(store)
    assert got["r2@example.net"] == ("sent", "") and got["r8@example.net"] == ("sent", "")
    received = Counter(recorder.recipients())
    assert set(received) == {f"r{n}@example.net" for n in (0, 2, 3, 7, 8, 9)} and set(received.values()) == {1}
    assert recorder.dropped == ["r5@example.net"]

    detail = run("sends", "1").output
    assert "sent 6" in detail and "failed 4" in detail and "in doubt 1" in detail
    assert "failed    r1@example.net: RCPT TO refused: 550 5.1.1 no such user" in detail
    assert "in doubt  r5@example.net:" in detail
    data = json.loads(run("sends", "1", "--json").output)
    assert data["counts"]["sent"] == 6 and data["status"] == "sent"
    nowhere = run("sends", "1", "--export", "/nonexistent/missed.csv")
    assert nowhere.exit_code == 1 and "cannot write /nonexistent/missed.csv" in nowhere.output and "Traceback" not in nowhere.output
    assert {m["email"]: m["outcome"] for m in data["missed"]}["r4@example.net"] == "failed"


def test_resolve_touches_only_what_it_names(scripted: SmtpServer, store: Store, tmp_path: Path) -> None:
    add(store, [(f"r{n}@example.net", "") for n in range(6)])
    recorder = scripted.recorder
    recorder.refuse_rcpt = {"r1@example.net": "550 5.1.1 no such user"}
    recorder.drop_data = {"r3@example.net"}
    assert run("queue", NEWEST, "--at", "now", "--yes").exit_code == 0
    run("scheduler", "--once")
    assert outcomes(store)["r3@example.net"][0] == "in_doubt"

    exported = tmp_path / "missed.csv"
    assert run("sends", "1", "--export", str(exported)).exit_code == 0
    with exported.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["email"], r["outcome"]) for r in rows} == {("r1@example.net", "failed"), ("r3@example.net", "in_doubt")}
    assert "550 5.1.1 no such user" in next(r["reason"] for r in rows if r["email"] == "r1@example.net")

    # --resend sends to the in-doubt one only, and reopens a send already finished.
    recorder.drop_data = set()
    assert json.loads(run("sends", "--json").output)[0]["status"] == "sent"
    assert run("resolve", "1", "--resend").exit_code == 0
    run("scheduler", "--once")
    assert outcomes(store)["r3@example.net"] == ("sent", "")
    assert outcomes(store)["r1@example.net"][0] == "failed"
    assert Counter(recorder.recipients())["r0@example.net"] == 1

    # --mark-sent finds nothing in doubt and leaves the failed one failed.
    result = run("resolve", "1", "--mark-sent")
    assert result.exit_code == 1 and "no delivery in doubt" in result.output
    assert outcomes(store)["r1@example.net"][0] == "failed"

    # --retry-failed, once the cause is fixed, sends to the failed one alone.
    recorder.refuse_rcpt = {}
    assert run("resolve", "1", "--retry-failed").exit_code == 0
    run("scheduler", "--once")
    received = Counter(recorder.recipients())
    assert received["r1@example.net"] == 1 and received["r0@example.net"] == 1
    assert json.loads(run("sends", "--json").output)[0]["counts"]["sent"] == 6


def test_mark_sent_leaves_failed_deliveries_failed(scripted: SmtpServer, store: Store) -> None:
    add(store, [(f"r{n}@example.net", "") for n in range(4)])
    scripted.recorder.refuse_rcpt = {"r0@example.net": "550 5.1.1 no such user"}
    scripted.recorder.drop_data = {"r2@example.net"}
    assert run("queue", NEWEST, "--at", "now", "--yes").exit_code == 0
    run("scheduler", "--once")
    assert run("resolve", "1", "--mark-sent").exit_code == 0
    got = outcomes(store)
    assert got["r0@example.net"][0] == "failed" and got["r2@example.net"][0] == "sent"


def test_a_deferral_that_outlasts_the_window_fails_with_the_last_answer(scripted: SmtpServer, store: Store,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_RETRY_FOR_HOURS", str(1.5 / 3600))  # one and a half seconds
    add(store, [("r0@example.net", ""), ("r1@example.net", "")])
    scripted.recorder.defer_rcpt = {"r1@example.net": 100}
    assert run("queue", NEWEST, "--at", "now", "--yes").exit_code == 0
    run("scheduler", "--once")
    assert outcomes(store)["r1@example.net"][0] == "deferred"
    for _ in range(4):
        time.sleep(0.8)
        run("scheduler", "--once")
    status, reason = outcomes(store)["r1@example.net"]
    assert status == "failed" and "451 4.7.1 try again later" in reason and "still refused after" in reason
    assert json.loads(run("sends", "--json").output)[0]["status"] == "sent"


def test_hostile_names_and_addresses_get_one_copy_each_or_fail_alone(store_settings: Settings, store: Store,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from newsletter.build import build

    assert build(store_settings).ok
    server = SmtpServer(smtputf8=True).start()
    try:
        monkeypatch.setenv("NEWSLETTER_PROVIDER", "smtp")
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", server.url)
        hostile = [
            ("crlf@example.net", "Ann\r\nBcc: victim@example.org"),
            ("word@example.net", "=?utf-8?b?YUBiLmMsIGRAZS5m?="),
            ("comma@example.net", "Smith, John <boss@example.org>"),
            ("ctrl@example.net", "bell\x07\x1bname"),
            ("idn@bücher.example", "Jörg"),
            ("josé@example.net", "José"),
            ("plain@example.net", ""),
        ]
        add(store, hostile)
        assert run("queue", NEWEST, "--at", "now", "--yes").exit_code == 0
        result = run("scheduler", "--once")
        assert result.exit_code == 0 and "Traceback" not in result.output, result.output
        got = outcomes(store)
        assert {status for status, _ in got.values()} == {"sent"}, got
        by_rcpt: dict[str, list] = {}
        for rcpts, message in server.recorder.messages:
            assert len(rcpts) == 1
            by_rcpt.setdefault(rcpts[0], []).append(message)
        assert set(by_rcpt) == {"crlf@example.net", "word@example.net", "comma@example.net", "ctrl@example.net",
                                "idn@xn--bcher-kva.example", "josé@example.net", "plain@example.net"}
        assert all(len(copies) == 1 for copies in by_rcpt.values())
        for rcpt, (message,) in by_rcpt.items():
            to = message["To"].addresses
            # Raw UTF-8 headers (SMTPUTF8) come back from the parser as surrogates.
            assert len(to) == 1 and to[0].addr_spec.encode("utf-8", "surrogateescape").decode() == rcpt, str(message["To"])
            assert message["Bcc"] is None
        assert by_rcpt["word@example.net"][0]["To"].addresses[0].display_name == "=?utf-8?b?YUBiLmMsIGRAZS5m?="
        assert by_rcpt["comma@example.net"][0]["To"].addresses[0].display_name == "Smith, John <boss@example.org>"
    finally:
        server.stop()


def test_a_message_that_cannot_be_built_fails_that_recipient_alone_in_the_outbox(newsletter_with_list: Settings, store: Store,
                                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from newsletter.messages import personal_copy as real
    from newsletter.providers import outbox

    def build(settings, issue, recipient, utf8=False):
        if recipient.email.startswith("ada."):
            raise ValueError("cannot build this one")
        return real(settings, issue, recipient, utf8)

    monkeypatch.setattr(outbox, "personal_copy", build)
    assert run("queue", NEWEST, "--at", "now", "--yes").exit_code == 0
    result = run("scheduler", "--once")
    assert result.exit_code == 0 and "Traceback" not in result.output
    got = outcomes(store)
    failed = {email for email, (status, _) in got.items() if status == "failed"}
    assert failed == {"ada.lovelace@example.com"}
    assert "cannot build this one" in got["ada.lovelace@example.com"][1]
    assert len(list(newsletter_with_list.outbox_path.glob("send-1/*.eml"))) == len(got) - 1


def test_an_unexpected_error_holds_that_send_and_the_next_goes_out(newsletter_with_list: Settings, store: Store,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from newsletter.providers.outbox import OutboxProvider

    real = OutboxProvider.send

    def broken_for_send_1(self, issue, recipients, outcomes):
        if issue.send_id == 1:
            raise RuntimeError("a bug")
        return real(self, issue, recipients, outcomes)

    monkeypatch.setattr(OutboxProvider, "send", broken_for_send_1)
    assert run("queue", NEWEST, "--at", "now", "--yes").exit_code == 0
    assert run("queue", "say-what-you-mean", "--at", "now", "--yes").exit_code == 0
    result = run("scheduler", "--once")
    assert result.exit_code == 0 and "Traceback" not in result.output
    assert "RuntimeError: a bug" in result.output
    sends = {s["id"]: s for s in json.loads(run("sends", "--json").output)}
    assert sends[1]["status"] == "held" and "RuntimeError: a bug" in sends[1]["note"]
    assert sends[2]["status"] == "sent" and sends[2]["counts"]["sent"] > 0


def test_a_title_with_a_line_break_is_a_build_error_naming_the_essay_and_line(newsletter_with_list: Settings) -> None:
    path = newsletter_with_list.issues_path / f"{NEWEST}.md"
    text = path.read_text(encoding="utf-8")
    start = text.index("title:")
    line = text[:start].count("\n") + 1
    end = text.index("\n", start)
    path.write_text(text[:start] + 'title: "Happy\\nFamilies"' + text[end:], encoding="utf-8")
    result = run("queue", NEWEST, "--at", "now", "--yes")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{path.name}:{line}" in result.output and "line break" in result.output


def test_an_smtp_url_with_a_bad_port_is_one_line_naming_the_setting(newsletter_with_list: Settings,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_PROVIDER", "smtp")
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", "smtp://editor:s3cret@127.0.0.1:99999")
    result = run("scheduler", "--once")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "NEWSLETTER_SMTP_URL" in result.output and "port" in result.output and "s3cret" not in result.output


def test_the_sends_list_fits_the_terminal_and_json_serves_scripts(newsletter_with_list: Settings, store: Store) -> None:
    for _ in range(3):
        assert run("queue", NEWEST, "--at", "now", "--yes", "--again").exit_code == 0
    run("scheduler", "--once")
    listed = run("sends").output
    assert max(len(line) for line in listed.splitlines()) <= 80, listed  # CliRunner's terminal is 80 columns
    assert "#3" in listed and "sent" in listed
    data = json.loads(run("sends", "--json").output)
    assert [s["id"] for s in data] == [1, 2, 3] and all(s["status"] == "sent" for s in data)
    assert all(s["counts"]["sent"] == data[0]["counts"]["sent"] > 0 for s in data)


def test_a_refused_login_holds_the_send_with_nobody_failed_and_it_goes_on_once_fixed(
        store_settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from newsletter.build import build

    from .smtp_server import ScriptedSmtp

    assert build(store_settings).ok
    server = ScriptedSmtp({"AUTH": ["535 5.7.8 bad credentials"] * 8}, extensions=("AUTH PLAIN",)).start()
    try:
        monkeypatch.setenv("NEWSLETTER_PROVIDER", "smtp")
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", f"smtp://editor:secret@127.0.0.1:{server.port}")
        monkeypatch.setenv("NEWSLETTER_BATCH_SIZE", "4")
        add(store, [(f"r{n}@example.net", "") for n in range(6)])
        assert run("queue", NEWEST, "--at", "now", "--yes").exit_code == 0

        first = run("scheduler", "--once")
        assert "Traceback" not in first.output and "secret" not in first.output
        assert "held: send #1: the SMTP server refused the login (535); nothing was sent" in first.output
        data = json.loads(run("sends", "1", "--json").output)
        counts = {status: n for status, n in data["counts"].items() if n}
        assert data["status"] == "held" and counts == {"pending": 6}  # nobody failed: it was our set-up

        server.answers["AUTH"] = ["235 2.7.0 accepted"] * 8  # the editor fixes the password
        assert run("resolve", "1", "--send-late").exit_code == 0
        second = run("scheduler", "--once")
        assert second.exit_code == 0, second.output
        done = json.loads(run("sends", "1", "--json").output)
        assert server.delivered == 6 and done["status"] == "sent" and done["counts"]["sent"] == 6
    finally:
        server.stop()


def test_an_unexpected_error_before_a_message_began_holds_the_send_with_nobody_in_doubt(
        scripted: SmtpServer, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from newsletter.providers.smtp import SmtpProvider

    add(store, [(f"r{n}@example.net", "") for n in range(3)])
    real = SmtpProvider._transfer

    def breaks_before_mail_for_r1(self, server, address, data, utf8, on_wire):  # a bug of ours, not the server's answer
        if address == "r1@example.net":
            raise UnicodeEncodeError("ascii", "jörg", 1, 2, "ordinal not in range(128)")
        return real(self, server, address, data, utf8, on_wire)

    monkeypatch.setattr(SmtpProvider, "_transfer", breaks_before_mail_for_r1)
    monkeypatch.setenv("NEWSLETTER_CONCURRENCY", "1")
    assert run("queue", NEWEST, "--at", "now", "--yes").exit_code == 0
    result = run("scheduler", "--once")
    assert "Traceback" not in result.output and "UnicodeEncodeError" in result.output
    data = json.loads(run("sends", "1", "--json").output)
    assert data["status"] == "held" and data["counts"]["in_doubt"] == 0  # r1 was never on the wire
    assert outcomes(store)["r0@example.net"] == ("sent", "") and outcomes(store)["r1@example.net"][0] == "pending"
