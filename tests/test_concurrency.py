"""One scheduler, several connections at once: everyone still gets exactly one copy, at the pace asked for."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import Settings
from newsletter.store import Store

from .conftest import statuses_in

NEWEST = "2017-03-06-happy-families-lets-talk-about-new-labour"


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def smtp_env(smtp_server, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NEWSLETTER_PROVIDER", "smtp")
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", smtp_server.url)
    monkeypatch.setenv("NEWSLETTER_BATCH_SIZE", "5")
    return smtp_server


def active(store: Store) -> set[str]:
    return {email for email, status in statuses_in(store).items() if status == "active"}


def test_four_connections_at_once_send_every_reader_exactly_one_copy(newsletter_with_list: Settings, store: Store,
                                                                      smtp_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_CONCURRENCY", "4")
    smtp_env.recorder.pause = 0.02  # a server with latency, taking messages side by side
    assert run("queue", NEWEST, "--at", "now", "--yes").exit_code == 0
    result = run("scheduler", "--once")
    assert result.exit_code == 0, result.output
    received = Counter(smtp_env.recorder.recipients())
    assert set(received) == active(store) and set(received.values()) == {1}, "everyone, once"
    assert smtp_env.recorder.most_at_once >= 2, "the messages went side by side, not one after another"
    counts = json.loads(run("sends", "--json").output)[0]["counts"]
    assert counts["sent"] == len(received) and counts["pending"] == 0


def test_max_per_second_holds_across_all_connections(newsletter_with_list: Settings, store: Store, smtp_env,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_CONCURRENCY", "4")
    monkeypatch.setenv("NEWSLETTER_MAX_PER_SECOND", "20")
    assert run("queue", NEWEST, "--at", "now", "--yes").exit_code == 0
    assert run("scheduler", "--once").exit_code == 0
    arrivals = sorted(smtp_env.recorder.arrivals)
    received = smtp_env.recorder.recipients()
    assert len(received) == len(set(received)) == len(active(store))
    # Never faster than the limit (a busy machine can only make it slower): n messages, 1/20 s apart.
    assert arrivals[-1] - arrivals[0] >= 0.85 * (len(arrivals) - 1) / 20


def test_a_server_asking_to_slow_down_halves_the_pace_and_defers_only_that_reader(
        newsletter_with_list: Settings, store: Store, smtp_env, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from newsletter.providers import get_provider
    from newsletter.scheduler import Scheduler

    settings = dataclasses.replace(newsletter_with_list, provider="smtp", smtp_url=smtp_env.url, concurrency=2,
                                   max_per_second=200, retry_after=60)
    people = sorted(active(store))
    smtp_env.recorder.defer_rcpt = {people[3]: 1}
    smtp_env.recorder.defer_answer = "421 4.7.0 Too many messages, slow down"
    assert run("queue", NEWEST, "--at", "now", "--yes").exit_code == 0
    scheduler = Scheduler(store, settings, get_provider(settings), "secret")
    report = scheduler.run_once()
    assert scheduler.pace.rate() == 100, "asked to slow down, it halved its pace"
    assert report.deferred == 1 and report.sent == len(people) - 1
    received = Counter(smtp_env.recorder.recipients())
    assert set(received) == set(people) - {people[3]} and set(received.values()) == {1}
