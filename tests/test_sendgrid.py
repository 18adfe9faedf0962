"""The official `sendgrid` client against a SendGrid-compatible server on 127.0.0.1."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import Settings
from newsletter.personalize import UNSUBSCRIBE_PLACEHOLDER
from newsletter.providers.sendgrid import SendGridProvider
from newsletter.sends import summaries
from newsletter.store import Store

from .sendgrid_server import API_KEY, REFERENCE
from .test_send import active_emails, add_readers, queue_now, run


@pytest.fixture
def sendgrid_env(newsletter_with_list: Settings, sendgrid_server, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
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
    assert all(UNSUBSCRIBE_PLACEHOLDER in c["value"] for c in body["content"]), "the issue goes once, with the tag"
    links = set()
    for person in accepted:
        link = person.substitutions[UNSUBSCRIBE_PLACEHOLDER]
        links.add(link)
        assert person.headers == {"List-Unsubscribe": f"<{link}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
        assert person.custom_args["send_id"] == "1" and person.custom_args["delivery_id"].isdigit()
    assert len(links) == len(accepted)


def test_a_429_storm_is_waited_out_then_everything_sends_once(sendgrid_env, store: Store) -> None:
    reset = int(time.time()) + 1
    sendgrid_env.fail_next(4, 429, {"X-RateLimit-Reset": reset, "X-RateLimit-Remaining": 0})
    queue_now()
    started = time.monotonic()
    result = run("scheduler", "--once")
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started >= reset - time.time() - 1, "it waited for X-RateLimit-Reset"
    assert sorted(sendgrid_env.emails()) == sorted(active_emails(store))


def test_server_errors_are_retried(sendgrid_env, store: Store) -> None:
    sendgrid_env.fail_next(3, 500)
    queue_now()
    run("scheduler", "--once")
    assert sorted(sendgrid_env.emails()) == sorted(active_emails(store))
    assert sendgrid_env.requests == 4


def test_a_400_fails_the_batch_with_sendgrids_message_and_is_not_retried(sendgrid_env, store: Store) -> None:
    sendgrid_env.fail_next(1, 400)
    queue_now()
    result = run("scheduler", "--once")
    assert "The from address does not match a verified Sender Identity." in result.output
    assert sendgrid_env.requests == 1 and sendgrid_env.accepted == []
    sends = run("sends", "1").output
    assert "failed 3" in sends or "failed" in sends
    assert "The from address does not match" in sends and "--retry-failed" in sends
    assert run("resolve", "1", "--retry-failed").exit_code == 0
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
