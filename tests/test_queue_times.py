"""`queue --at` means what the editor meant: no guessing across daylight-saving changes,
no silent past times, and a confirmation that shows the time three ways."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import load_settings
from newsletter.send_time import SendTimeError, parse_send_time
from newsletter.sends import summaries
from newsletter.store import open_store

NOW = dt.datetime(2036, 12, 1, 12, 0)  # naive UTC, before every time below
ISSUE = "say-what-you-mean"

# (zone, a local time the clocks skip, its two offsets, a local time that happens twice, its two offsets)
EDGES = [
    ("Europe/London", "2037-03-29 01:30", ("+00:00", "+01:00"), "2037-10-25 01:30", ("+01:00", "+00:00")),
    ("America/New_York", "2037-03-08 02:30", ("-05:00", "-04:00"), "2037-11-01 01:30", ("-04:00", "-05:00")),
]


@pytest.mark.parametrize(("zone", "skipped", "offsets"), [(e[0], e[1], e[2]) for e in EDGES])
def test_a_local_time_the_clocks_skip_is_refused_with_offsets_to_choose(zone: str, skipped: str, offsets: tuple[str, str]) -> None:
    with pytest.raises(SendTimeError, match="does not exist in " + zone) as caught:
        parse_send_time(skipped, zone, NOW)
    day = skipped.replace(" ", "T")
    assert f"{day}{offsets[0]} or {day}{offsets[1]}" in str(caught.value)


@pytest.mark.parametrize(("zone", "twice", "offsets"), [(e[0], e[3], e[4]) for e in EDGES])
def test_a_local_time_that_happens_twice_is_refused_with_offsets_to_choose(zone: str, twice: str, offsets: tuple[str, str]) -> None:
    with pytest.raises(SendTimeError, match="happens twice in " + zone) as caught:
        parse_send_time(twice, zone, NOW)
    day = twice.replace(" ", "T")
    assert f"{day}{offsets[0]} or {day}{offsets[1]}" in str(caught.value)
    for offset in offsets:  # either choice, written out, is taken as written
        chosen = parse_send_time(f"{day}{offset}", zone, NOW)
        assert chosen.utc == dt.datetime.fromisoformat(f"{day}{offset}").astimezone(dt.UTC).replace(tzinfo=None)


@pytest.mark.parametrize(("zone", "local", "utc"), [
    ("Europe/London", "2037-03-29 00:59", "2037-03-29 00:59"), ("Europe/London", "2037-03-29 02:00", "2037-03-29 01:00"),
    ("Europe/London", "2037-10-25 00:59", "2037-10-24 23:59"), ("Europe/London", "2037-10-25 02:00", "2037-10-25 02:00"),
    ("America/New_York", "2037-03-08 01:59", "2037-03-08 06:59"), ("America/New_York", "2037-03-08 03:00", "2037-03-08 07:00"),
    ("America/New_York", "2037-11-01 00:59", "2037-11-01 04:59"), ("America/New_York", "2037-11-01 02:00", "2037-11-01 07:00"),
])
def test_times_just_outside_the_changes_are_read_in_the_right_offset(zone: str, local: str, utc: str) -> None:
    assert parse_send_time(local, zone, NOW).utc == dt.datetime.fromisoformat(utc)


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input)


def sends_in(project: Path) -> list:
    store = open_store(load_settings(project, environ={}))
    try:
        with store.engine.connect() as conn:
            return summaries(conn)
    finally:
        store.dispose()


@pytest.mark.parametrize("edge", ["skipped", "twice"])
@pytest.mark.parametrize(("zone", "skipped", "twice"), [(e[0], e[1], e[3]) for e in EDGES])
def test_queue_refuses_an_unclear_local_time_and_queues_nothing(project: Path, zone: str, skipped: str, twice: str, edge: str) -> None:
    at = skipped if edge == "skipped" else twice
    result = run("queue", ISSUE, "--at", at, "--tz", zone, "--yes")
    assert result.exit_code == 1
    assert ("does not exist" if edge == "skipped" else "happens twice") in result.output and "offset" in result.output
    assert "Traceback" not in result.output
    assert sends_in(project) == []


def test_queue_shows_the_time_as_typed_in_its_zone_and_in_utc(project: Path) -> None:
    result = run("queue", ISSUE, "--at", "2037-07-06 09:00", "--tz", "America/New_York", input="y\n")
    assert result.exit_code == 0, result.output
    assert "Send at:    2037-07-06 09:00 America/New_York (EDT, UTC-04:00) = 2037-07-06 13:00 UTC" in result.output
    assert sends_in(project)[0].scheduled_at == dt.datetime(2037, 7, 6, 13, 0)
    result = run("queue", ISSUE, "--at", "2037-01-06T09:00+05:30", "--again", "--yes")
    assert "Send at:    2037-01-06T09:00+05:30 (UTC+05:30) = 2037-01-06 03:30 UTC" in result.output


def test_the_timezone_setting_is_used_without_tz(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_TIMEZONE", "Europe/London")
    result = run("queue", ISSUE, "--at", "2037-10-25 01:30", "--yes")
    assert result.exit_code == 1 and "happens twice in Europe/London" in result.output


def test_a_past_time_asks_first_and_is_sent_now_not_held(project: Path) -> None:
    result = run("queue", ISSUE, "--at", "2017-03-06T09:00+00:00", input="n\n")
    assert result.exit_code == 1 and "That time is" in result.output and "ago" in result.output
    assert "not queued" in result.output
    assert sends_in(project) == []
    before = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    result = run("queue", ISSUE, "--at", "2017-03-06T09:00+00:00", input="y\n")
    assert result.exit_code == 0, result.output
    [send] = sends_in(project)
    assert before - dt.timedelta(seconds=5) <= send.scheduled_at <= dt.datetime.now(dt.UTC).replace(tzinfo=None)
    assert run("subscribers", "add", "ada@example.com").exit_code == 0
    sent = run("scheduler", "--once")
    assert "Sent 1 message(s)" in sent.output and "held" not in sent.output


def test_yes_answers_for_a_past_time_too(project: Path) -> None:
    result = run("queue", ISSUE, "--at", "2017-03-06 09:00", "--tz", "Europe/London", "--yes")
    assert result.exit_code == 0, result.output
    assert sends_in(project)[0].scheduled_at > dt.datetime(2026, 1, 1)


def test_without_a_terminal_queue_says_to_pass_yes_instead_of_aborting(project: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "SENDGRID_"))}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run([sys.executable, "-m", "newsletter", "queue", ISSUE, "--at", "now"], cwd=project, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "Aborted!" not in done.stdout + done.stderr
    assert "no terminal to answer; pass --yes" in done.stderr
    assert sends_in(project) == []
