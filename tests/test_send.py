"""Queue an issue, run the scheduler: every active subscriber gets exactly one copy."""

from __future__ import annotations

import datetime
import email
import email.policy
import threading
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select, update

from newsletter.config import Settings
from newsletter.messages import Issue, Recipient
from newsletter.providers import Outcomes
from newsletter.sends import SendError, parse_when, summaries
from newsletter.store import Store
from newsletter.store import subscribers as ops
from newsletter.store.schema import DeliveryStatus, batches, sends
from newsletter.tokens import Signer

from .conftest import NEWEST, SECRET, FreshStore, active_emails, queue_now, run


def outbox_messages(settings: Settings) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for path in sorted(settings.outbox_path.glob("send-*/*.eml"))
    ]


def test_outbox_send_gives_each_active_subscriber_one_complete_message(newsletter_with_list: Settings, store: Store) -> None:
    settings = newsletter_with_list
    queue_now()
    result = run("scheduler", "--once")
    assert result.exit_code == 0, result.output
    assert "outbox" in result.output
    messages = outbox_messages(settings)
    assert sorted(m["To"].addresses[0].addr_spec for m in messages) == sorted(active_emails(store))
    signer = Signer(SECRET)
    for message in messages:
        assert message["From"] == settings.sender
        assert message["Subject"] == "Happy Families? Sorry – but let’s talk about New Labour"
        assert message["Date"] and message["Message-ID"]
        assert message.get_content_type() == "multipart/alternative"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        link = str(message["List-Unsubscribe"]).strip("<>")
        assert link.startswith(settings.base_url + "/unsubscribe?token=")
        text = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        assert f"Unsubscribe: {link}" in text and f'href="{link}"' in html
        assert "%%unsubscribe_url%%" not in text + html
        token = signer.verify(link.split("token=")[1])
        with store.engine.connect() as conn:
            assert ops.get(conn, token.subscriber_id).email == message["To"].addresses[0].addr_spec
    assert len({m["Message-ID"] for m in messages}) == len(messages)
    sent = run("sends").output
    assert "sent" in sent and str(len(messages)) in sent


def test_rerunning_the_scheduler_sends_nothing_more(newsletter_with_list: Settings, store: Store) -> None:
    queue_now()
    run("scheduler", "--once")
    first = sorted(p.name for p in newsletter_with_list.outbox_path.rglob("*.eml"))
    result = run("scheduler", "--once")
    assert "Sent 0 message(s)" in result.output
    assert sorted(p.name for p in newsletter_with_list.outbox_path.rglob("*.eml")) == first


def test_queue_shows_title_and_recipients_and_asks_first(newsletter_with_list: Settings, store: Store) -> None:
    result = run("queue", "happy-families-lets-talk-about-new-labour", "--at", "now", input="n\n")
    assert result.exit_code == 1
    assert "Happy Families? Sorry" in result.output and f"{len(active_emails(store))} active subscriber" in result.output
    with store.engine.connect() as conn:
        assert summaries(conn) == []
    result = run("queue", "happy-families-lets-talk-about-new-labour", "--at", "now", input="y\n")
    assert result.exit_code == 0 and "Queued as send #1" in result.output


def test_queue_refuses_an_issue_that_does_not_build(newsletter_with_list: Settings) -> None:
    path = newsletter_with_list.issues_path / f"{NEWEST}.md"
    path.write_text(path.read_text(encoding="utf-8").replace("date: 2017-03-06", "date: sometime"), encoding="utf-8")
    result = run("queue", NEWEST, "--at", "now", "--yes")
    assert result.exit_code == 1
    assert "does not build" in result.output and "date 'sometime'" in result.output
    assert "no issue 'nonsense'" in run("queue", "nonsense", "--at", "now", "--yes").output


def test_queue_refuses_an_issue_already_queued_or_sent_unless_told(newsletter_with_list: Settings) -> None:
    queue_now()
    result = run("queue", NEWEST, "--at", "now", "--yes")
    assert result.exit_code == 1 and "already queued" in result.output and "--again" in result.output
    queue_now(NEWEST, "--again")


def test_when_is_now_an_offset_or_a_local_time_in_a_zone() -> None:
    assert parse_when("2017-03-06T09:00+01:00", "UTC").isoformat() == "2017-03-06T08:00:00"
    assert parse_when("2017-07-06 09:00", "Europe/London").isoformat() == "2017-07-06T08:00:00"
    with pytest.raises(SendError, match="not a time"):
        parse_when("tomorrowish", "UTC")
    with pytest.raises(SendError, match="not a time zone"):
        parse_when("2017-07-06 09:00", "Mars/Olympus")


def test_a_send_not_yet_due_waits(newsletter_with_list: Settings) -> None:
    assert run("queue", NEWEST, "--at", "2999-01-01T00:00+00:00", "--yes").exit_code == 0
    assert "Sent 0 message(s)" in run("scheduler", "--once").output
    assert not list(newsletter_with_list.outbox_path.rglob("*.eml"))


def test_someone_who_unsubscribes_after_the_freeze_is_skipped(fresh_store: FreshStore) -> None:
    fresh_store.queue()
    # One worker: batches are claimed one after another, so the reader's batch is claimed after
    # they left. With several workers it may already be claimed, and then it is rightly sent.
    scheduler = fresh_store.scheduler(batch_size=5, concurrency=1)
    inner = scheduler.provider
    victim = "zoe.evans@example.org"
    sent_batches = []

    class UnsubscribeMidway:
        name = "outbox"

        def send(self, issue: Issue, recipients: list[Recipient], outcomes: Outcomes) -> dict[int, str]:
            sent_batches.append([r.email for r in recipients])
            if len(sent_batches) == 1:
                with fresh_store.store.begin() as conn:
                    ops.unsubscribe(conn, victim, "clicked unsubscribe")
            return inner.send(issue, recipients, outcomes)

    scheduler.provider = UnsubscribeMidway()
    report = scheduler.run_once()
    everyone = [e for batch in sent_batches for e in batch]
    assert victim not in everyone and report.skipped == 1
    assert len(everyone) == len(set(everyone))
    assert fresh_store.summaries()[0].counts == {"sent": len(everyone), "skipped": 1}


def test_cancel_a_queued_send_and_stop_one_in_progress(fresh_store: FreshStore) -> None:
    queue_now()
    assert run("cancel", "1").exit_code == 0
    assert "Sent 0" in run("scheduler", "--once").output

    second = fresh_store.queue(again=True)
    scheduler = fresh_store.scheduler(batch_size=5, concurrency=1)
    inner = scheduler.provider
    calls = []

    class CancelAfterFirstBatch:
        name = "outbox"

        def send(self, issue: Issue, recipients: list[Recipient], outcomes: Outcomes) -> dict[int, str]:
            calls.append(len(recipients))
            if len(calls) == 1:
                assert run("cancel", str(second)).exit_code == 0
            return inner.send(issue, recipients, outcomes)

    scheduler.provider = CancelAfterFirstBatch()
    scheduler.run_once()
    assert calls == [5], "the batch under way finishes, then nothing more"
    send = next(s for s in fresh_store.summaries() if s.id == second)
    assert send.status == "cancelled" and send.counts["sent"] == 5 and send.counts["pending"] > 0
    assert "cannot be cancelled" in run("cancel", str(second)).output


def test_an_overdue_send_is_held_until_the_editor_confirms(newsletter_with_list: Settings, store: Store) -> None:
    queue_now()
    with store.begin() as conn:  # as if no scheduler had run since 2017 (queue itself refuses a past time)
        conn.execute(update(sends).values(scheduled_at=datetime.datetime(2017, 3, 6, 9, 0)))
    result = run("scheduler", "--once")
    assert "held" in result.output and "--send-late" in result.output
    assert not list(newsletter_with_list.outbox_path.rglob("*.eml"))
    assert "held" in run("sends").output
    assert run("resolve", "1", "--send-late").exit_code == 0
    run("scheduler", "--once")
    assert len(list(newsletter_with_list.outbox_path.rglob("*.eml"))) == len(active_emails(store))


def test_a_send_with_nobody_to_send_to_finishes_at_once(store_settings: Settings, store: Store) -> None:
    from newsletter.build import build

    build(store_settings)
    queue_now()
    run("scheduler", "--once")
    with store.engine.connect() as conn:
        assert summaries(conn)[0].status == "sent"


def test_test_copy_goes_to_one_address_and_records_no_send(newsletter_with_list: Settings, store: Store) -> None:
    result = run("test", "say-what-you-mean", "--to", "editor@example.org")
    assert result.exit_code == 0, result.output
    copies = list((newsletter_with_list.outbox_path / "test").glob("*.eml"))
    assert len(copies) == 1
    message = email.message_from_bytes(copies[0].read_bytes(), policy=email.policy.default)
    assert message["To"] == "editor@example.org" and "chimney sweep" in message["Subject"]
    with store.engine.connect() as conn:
        assert summaries(conn) == []


def test_smtp_delivers_through_real_smtplib(newsletter_with_list: Settings, store: Store, smtp_server, monkeypatch) -> None:
    monkeypatch.setenv("NEWSLETTER_PROVIDER", "smtp")
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", smtp_server.url)
    queue_now()
    result = run("scheduler", "--once")
    assert result.exit_code == 0, result.output
    received = smtp_server.recorder.messages
    assert sorted(r for rcpts, _ in received for r in rcpts) == sorted(active_emails(store))
    _, message = received[0]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "unsubscribe?token=" in message.get_body(("plain",)).get_content()


def test_smtp_server_that_is_down_defers_everyone_and_sends_nothing(newsletter_with_list: Settings, store: Store, monkeypatch) -> None:
    from newsletter.providers.smtp import SmtpProvider

    from .smtp_server import free_port

    monkeypatch.setattr(SmtpProvider, "backoff_base", 0.01)
    monkeypatch.setenv("NEWSLETTER_PROVIDER", "smtp")
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", f"smtp://127.0.0.1:{free_port()}")
    queue_now()
    result = run("scheduler", "--once")
    assert "cannot reach the SMTP server" in result.output
    with store.engine.connect() as conn:
        send = summaries(conn)[0]
    assert send.status == "sending" and send.counts == {"deferred": len(active_emails(store))}
    assert "deferred" in result.output and "Next retry at" in result.output


def test_batches_are_claimed_once_even_by_racing_schedulers_in_threads(fresh_store: FreshStore) -> None:
    """Four schedulers in one process, on one database: still one copy each."""
    fresh_store.add_readers(300)
    fresh_store.queue()
    seen: list[str] = []
    lock = threading.Lock()

    class Counting:
        name = "smtp"

        def send(self, issue: Issue, recipients: list[Recipient], outcomes: Outcomes) -> dict[int, str]:
            with lock:
                seen.extend(r.email for r in recipients)
            for recipient in recipients:
                outcomes.settle(recipient, DeliveryStatus.SENT)
            return {}

    runners = [fresh_store.scheduler(Counting(), batch_size=7) for _ in range(4)]
    threads = [threading.Thread(target=r.run_once) for r in runners]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Counter(seen).most_common(1)[0][1] == 1
    assert set(seen) == fresh_store.active_emails()
    with fresh_store.store.engine.connect() as conn:
        assert conn.execute(select(sends.c.status)).scalar() == "sent"
        assert set(conn.execute(select(batches.c.status)).scalars()) == {"done"}


def test_the_sample_list_and_issue_in_the_repo_are_what_the_demo_sends(project: Path) -> None:
    result = run("demo")
    assert result.exit_code == 0, result.output
    assert "outbox" in result.output and "build/index.html" in result.output
    assert len(list((project / "outbox").glob("send-1/*.eml"))) >= 24
    again = run("demo")
    assert "not sending it twice" in again.output
    assert len(list((project / "outbox").glob("send-*/*.eml"))) == len(list((project / "outbox").glob("send-1/*.eml")))


def test_smtp_upgrades_to_starttls_when_offered_and_logs_in(newsletter_with_list: Settings, store: Store, tmp_path: Path,
                                                             monkeypatch) -> None:
    from .certificates import server_tls
    from .smtp_server import SmtpServer

    context, ca_file = server_tls(tmp_path)
    server = SmtpServer(tls_context=context, login=("editor", "p@ss word")).start()
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # trust the test CA, and only it
        monkeypatch.setenv("NEWSLETTER_PROVIDER", "smtp")
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", f"smtp://editor:p%40ss%20word@127.0.0.1:{server.port}")
        queue_now()
        result = run("scheduler", "--once")
        assert result.exit_code == 0, result.output
        assert sorted(server.recorder.recipients()) == sorted(active_emails(store))
        assert set(server.recorder.sessions) == {(True, b"editor")}, "every message went over TLS, logged in"
    finally:
        server.stop()


def test_smtp_refuses_a_server_whose_certificate_it_cannot_trust(newsletter_with_list: Settings, store: Store,
                                                                 tmp_path: Path, monkeypatch) -> None:
    from newsletter.providers.smtp import SmtpProvider

    from .certificates import server_tls
    from .smtp_server import SmtpServer

    context, _ = server_tls(tmp_path)
    server = SmtpServer(tls_context=context).start()
    try:
        monkeypatch.setattr(SmtpProvider, "backoff_base", 0.01)
        monkeypatch.setenv("NEWSLETTER_PROVIDER", "smtp")
        monkeypatch.setenv("NEWSLETTER_SMTP_URL", f"smtp://127.0.0.1:{server.port}")
        queue_now()
        result = run("scheduler", "--once")
        assert "cannot reach the SMTP server" in result.output and "CERTIFICATE_VERIFY_FAILED" in result.output
        assert server.recorder.recipients() == []
    finally:
        server.stop()
