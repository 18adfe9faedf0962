"""The official `sendgrid` client against a SendGrid-compatible server on 127.0.0.1."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import Settings
from newsletter.personalize import UNSUBSCRIBE_PLACEHOLDER
from newsletter.providers.sendgrid import SendGridProvider
from newsletter.sends import summaries
from newsletter.store import Store

from .sendgrid_server import API_KEY, REFERENCE
from .conftest import active_emails, add_readers, queue_now, run


@pytest.fixture
def sendgrid_env(newsletter_with_list: Settings, sendgrid_server, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NEWSLETTER_PROVIDER", "sendgrid")
    monkeypatch.setenv("SENDGRID_API_KEY", API_KEY)
    monkeypatch.setenv("NEWSLETTER_SENDGRID_HOST", sendgrid_server.host)
    monkeypatch.setattr(SendGridProvider, "backoff_base", 0.01)
    return sendgrid_server


def test_every_request_body_validates_against_sendgrids_description(sendgrid_env, store: Store) -> None:
    if sendgrid_env.validator is None:
        pytest.skip(f"SendGrid's API description is not at {REFERENCE}")
    add_readers(store, 2300)
    queue_now()
    result = run("scheduler", "--once")
    assert result.exit_code == 0, result.output
    assert sendgrid_env.invalid == []
    assert sendgrid_env.request_sizes and max(sendgrid_env.request_sizes) <= 1000
    assert sorted(sendgrid_env.emails()) == sorted(active_emails(store))


def test_each_personalization_carries_its_own_link_headers_and_ids(sendgrid_env, store: Store) -> None:
    queue_now()
    run("scheduler", "--once")
    accepted = sendgrid_env.accepted
    assert len(accepted) == len(active_emails(store))
    body = accepted[0].body
    assert body["subject"] == "Happy Families? Sorry – but let’s talk about New Labour"
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["headers"]["List-Id"].endswith(".127.0.0.1>") and "Say What You Mean" in body["headers"]["List-Id"]
    assert all(UNSUBSCRIBE_PLACEHOLDER in c["value"] for c in body["content"]), "the issue goes once, with the tag"
    links = set()
    for person in accepted:
        link = person.substitutions[UNSUBSCRIBE_PLACEHOLDER]
        links.add(link)
        assert person.headers == {"List-Unsubscribe": f"<{link}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
        assert person.custom_args["send_id"] == "1" and person.custom_args["delivery_id"].isdigit()
    assert len(links) == len(accepted)


def test_a_429_waits_for_the_rate_limit_reset_then_everyone_gets_exactly_one_copy(sendgrid_env, store: Store,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    add_readers(store, 1500)  # four batches of 500 at most, for four workers
    monkeypatch.setenv("NEWSLETTER_CONCURRENCY", "4")
    reset = int(time.time()) + 2
    sendgrid_env.fail_next(3, 429, {"X-RateLimit-Reset": reset, "X-RateLimit-Remaining": 0})
    queue_now()
    result = run("scheduler", "--once")
    assert result.exit_code == 0, result.output
    # The answers said "wait until `reset`": after the four requests first in flight (one per
    # worker, sent at once), no request may come before it, from any worker.
    later = sendgrid_env.arrivals[4:]
    assert later and all(t >= reset for t in later), "every worker waited for X-RateLimit-Reset"
    received = Counter(sendgrid_env.emails())
    assert set(received) == active_emails(store) and set(received.values()) == {1}
    assert sendgrid_env.requests == 3 + len(sendgrid_env.request_sizes)


def test_a_429_asks_every_worker_to_pause_until_the_reset(sendgrid_server, settings: Settings) -> None:
    """SendGrid serves no request until the reset: the provider tells the scheduler's shared pace so."""
    import dataclasses

    from newsletter.messages import Issue, Recipient
    from newsletter.providers import Collected

    settings = dataclasses.replace(settings, provider="sendgrid", sendgrid_api_key=API_KEY,
                                   sendgrid_host=sendgrid_server.host)
    provider = SendGridProvider(settings)
    provider.backoff_base = 0.01
    pauses: list[float] = []

    class Told(Collected):
        def slow_down(self, pause: float = 0.0) -> None:
            pauses.append(pause)

    reset = int(time.time()) + 3
    sendgrid_server.fail_next(1, 429, {"X-RateLimit-Reset": reset})
    issue = Issue(slug="s", subject="Hello", html="<p>hi</p>", text="hi")
    provider.send(issue, [Recipient("reader@example.net", "", "http://x/u", 1, 1)], Told())
    assert len(pauses) == 1 and 1.5 < pauses[0] <= 3.0, pauses
    assert sendgrid_server.emails() == ["reader@example.net"]


def test_a_refused_connection_is_tried_again_and_sends_once(sendgrid_env, store: Store, monkeypatch) -> None:
    from newsletter.providers.retry import RetryPolicy

    from .sendgrid_server import SendGridServer

    port = int(sendgrid_env.host.rpartition(":")[2])
    sendgrid_env.stop()  # nothing listens there now: the first attempt is refused
    revived: list[SendGridServer] = []

    def then_start_the_server(_seconds: float) -> None:
        if not revived:
            revived.append(SendGridServer(port).start())

    monkeypatch.setattr(SendGridProvider, "policy", lambda self: RetryPolicy(sleep=then_start_the_server))
    queue_now()
    try:
        result = run("scheduler", "--once")
        assert result.exit_code == 0, result.output
        assert revived, "the refused attempt was tried again"
        received = Counter(revived[0].emails())
        assert set(received) == active_emails(store) and set(received.values()) == {1}
        assert revived[0].requests == 1
    finally:
        for server in revived:
            server.stop()


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_after_sendgrid_took_the_batch_leaves_it_in_doubt_and_sends_nothing_twice(sendgrid_env, store: Store, status: int) -> None:
    sendgrid_env.accept_then(1, status)
    queue_now()
    result = run("scheduler", "--once")
    assert "in doubt" in result.output, result.output
    assert sendgrid_env.requests == 1, "a request that may have been taken is never repeated by itself"
    run("scheduler", "--once")
    assert sendgrid_env.requests == 1
    received = Counter(sendgrid_env.emails())
    assert set(received) == active_emails(store) and set(received.values()) == {1}
    assert "in doubt" in run("sends").output


@pytest.mark.parametrize("what", ["drop", "stall"])
def test_a_connection_lost_after_the_request_was_sent_leaves_the_batch_in_doubt(sendgrid_env, store: Store, monkeypatch,
                                                                                what: str) -> None:
    monkeypatch.setattr(SendGridProvider, "timeout", 0.5)
    sendgrid_env.stall = 2.0
    sendgrid_env.accept_then(1, what)
    queue_now()
    result = run("scheduler", "--once")
    assert "in doubt" in result.output and "Traceback" not in result.output, result.output
    assert sendgrid_env.requests == 1
    assert Counter(sendgrid_env.emails()) == Counter(active_emails(store))


def test_a_400_holds_the_send_with_sendgrids_message_nobody_failed_and_is_not_retried(sendgrid_env, store: Store) -> None:
    sendgrid_env.fail_next(1, 400)
    queue_now()
    result = run("scheduler", "--once")
    assert "The from address does not match a verified Sender Identity." in result.output and "held" in result.output
    assert sendgrid_env.requests == 1 and sendgrid_env.accepted == []
    sends = run("sends", "1").output
    assert "held" in sends and "failed" not in sends.replace("failed 0", "")  # our set-up, not the readers
    assert "The from address does not match" in sends and "--send-late" in sends
    assert run("resolve", "1", "--send-late").exit_code == 0
    run("scheduler", "--once")
    assert sorted(sendgrid_env.emails()) == sorted(active_emails(store))


def test_without_an_api_key_the_scheduler_says_what_to_set(newsletter_with_list: Settings, monkeypatch) -> None:
    monkeypatch.setenv("NEWSLETTER_PROVIDER", "sendgrid")
    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)
    result = CliRunner().invoke(cli, ["scheduler", "--once"])
    assert result.exit_code == 1 and "SENDGRID_API_KEY is not set" in result.output


def test_the_api_key_never_reaches_the_output(sendgrid_env, store: Store) -> None:
    sendgrid_env.fail_next(1, 400)
    queue_now()
    result = run("scheduler", "--once")
    assert API_KEY not in result.output
    with store.engine.connect() as conn:
        assert all(API_KEY not in (s.note or "") for s in summaries(conn))
