"""A send under way shows its progress, its pace and the time left, from the database alone."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select, update

from newsletter.cli import cli
from newsletter.config import Settings
from newsletter.store import Store
from newsletter.store import deliveries as ops
from newsletter.store.schema import deliveries, subscribers, utcnow

from .sendgrid_server import API_KEY, SendGridServer

NEWEST = "2017-03-06-happy-families-lets-talk-about-new-labour"


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def add_readers(store: Store, count: int) -> None:
    now = utcnow()
    with store.begin() as conn:
        conn.execute(insert(subscribers), [
            dict(email=f"reader{n}@example.net", email_key=f"reader{n}@example.net", name="", attributes={},
                 status="active", source="test", created_at=now, updated_at=now, status_changed_at=now)
            for n in range(count)])


def under_way(store: Store, started: dt.datetime, outcomes: list[tuple[str, dt.datetime | None]]) -> int:
    """The issue queued and frozen at `started`, its deliveries (in order) given these outcomes; the rest untried."""
    result = run("queue", NEWEST, "--at", "now", "--yes", "--again")
    assert result.exit_code == 0, result.output
    with store.begin() as conn:
        send_id = max(row.id for row in ops.due_sends(conn, utcnow()))
        assert ops.freeze(conn, send_id, 10, started)
        ops.materialise_pending(conn)  # as the batches' claims would
        ids = conn.execute(select(deliveries.c.id).where(deliveries.c.send_id == send_id).order_by(deliveries.c.id)).scalars().all()
        for delivery, (status, sent_at) in zip(ids, outcomes, strict=False):
            conn.execute(update(deliveries).where(deliveries.c.id == delivery).values(status=status, sent_at=sent_at))
    return send_id


def test_sends_shows_a_running_sends_pace_and_time_left(store_settings: Settings, store: Store,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    add_readers(store, 100)
    now = utcnow()
    monkeypatch.setattr("newsletter.store.sends.utcnow", lambda: now)  # `sends` reads the clock as these were written
    # Started ten minutes ago: 20 went out minutes ago, 30 in the last minute, 5 failed; 45 to go at 30 a minute.
    old = under_way(store, now - dt.timedelta(minutes=10),
                    [("sent", now - dt.timedelta(minutes=5))] * 20 + [("sent", now - dt.timedelta(seconds=30))] * 30
                    + [("failed", None)] * 5)
    # Started 20 seconds ago: 10 sent since, which is 30 a minute; 90 to go.
    new = under_way(store, now - dt.timedelta(seconds=20), [("sent", now - dt.timedelta(seconds=5))] * 10)

    listed = run("sends")
    assert listed.exit_code == 0, listed.output
    assert max(len(line) for line in listed.output.splitlines()) <= 80, listed.output
    assert f"#{old} under way: 55% done (55 of 100), 30 sent a minute, about 2 min left" in listed.output
    assert f"#{new} under way: 10% done (10 of 100), 30 sent a minute, about 3 min left" in listed.output
    assert "sending 55%" in listed.output

    detail = run("sends", str(old))
    assert detail.exit_code == 0, detail.output
    assert "Recipients: 100; sent 50, pending 45, deferred 0, failed 5" in detail.output
    assert "Progress: 55% done (55 of 100), 30 sent a minute, about 2 min left" in detail.output
    progress = json.loads(run("sends", str(old), "--json").output)["progress"]
    assert progress == {"done": 55, "total": 100, "sent_per_minute": 30.0, "seconds_left": 90}


def test_a_send_that_sent_nothing_lately_gives_no_time_left(store_settings: Settings, store: Store) -> None:
    add_readers(store, 10)
    now = utcnow()
    send_id = under_way(store, now - dt.timedelta(hours=1), [("sent", now - dt.timedelta(minutes=30))] * 4
                        + [("deferred", None)] * 2)
    detail = run("sends", str(send_id))
    assert "Progress: 40% done (4 of 10), none sent in the last minute" in detail.output
    assert "left" not in detail.output.split("Progress:")[1].splitlines()[0]
    assert json.loads(run("sends", str(send_id), "--json").output)["progress"]["seconds_left"] is None


def test_a_send_watched_while_the_scheduler_sends_it(store_settings: Settings, store: Store,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from newsletter.build import build

    assert build(store_settings).ok
    add_readers(store, 60)
    server = SendGridServer().start()
    server.delay = 0.3  # a request takes a while, as SendGrid's do
    monkeypatch.setenv("NEWSLETTER_PROVIDER", "sendgrid")
    monkeypatch.setenv("SENDGRID_API_KEY", API_KEY)
    monkeypatch.setenv("NEWSLETTER_SENDGRID_HOST", server.host)
    monkeypatch.setenv("NEWSLETTER_BATCH_SIZE", "10")
    monkeypatch.setenv("NEWSLETTER_CONCURRENCY", "1")  # one request at a time: slow enough to watch
    try:
        assert run("queue", NEWEST, "--at", "now", "--yes").exit_code == 0
        # The scheduler in a process of its own, as on another machine; `sends` here sees only the database.
        scheduler = subprocess.Popen([sys.executable, "-m", "newsletter", "scheduler", "--once"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seen = None
        deadline = time.monotonic() + 60
        while scheduler.poll() is None and time.monotonic() < deadline:
            data = json.loads(run("sends", "1", "--json").output)
            if data["status"] == "sending" and data["progress"]["done"] >= 10:
                seen = data
                break
            time.sleep(0.05)
        output, _ = scheduler.communicate(timeout=120)
    finally:
        server.stop()
    assert scheduler.returncode == 0, output
    assert seen is not None, "the send was seen under way"
    progress = seen["progress"]
    assert progress["total"] == 60 and 10 <= progress["done"] < 60 and progress["sent_per_minute"] > 0
    assert progress["seconds_left"] is not None and progress["seconds_left"] > 0
    finished = json.loads(run("sends", "1", "--json").output)
    assert finished["status"] == "sent" and finished["counts"]["sent"] == 60 and finished["progress"] is None


def test_the_schedulers_count_of_what_is_due_matches_the_deliveries(store_settings: Settings, store: Store) -> None:
    """Never-claimed batches are counted by their range of ids, the others row by row: the same total."""
    from sqlalchemy import and_, func, or_

    from newsletter.store.schema import batches, sends

    add_readers(store, 95)
    now = utcnow()
    first = under_way(store, now, [])  # ten batches of ten (the last of five), none claimed
    second = under_way(store, now, [])
    with store.begin() as conn:
        for _ in range(3):  # three of the first send's batches claimed, one deferred partly, one sent
            ops.claim(conn, "test", "smtp", now, store.dialect == "postgresql")
        rows = conn.execute(select(deliveries.c.id).where(deliveries.c.send_id == first).order_by(deliveries.c.id)).scalars().all()
        conn.execute(update(deliveries).where(deliveries.c.id.in_(rows[:10])).values(status="sent"))
        conn.execute(update(deliveries).where(deliveries.c.id.in_(rows[10:13])).values(
            status="deferred", next_attempt_at=now + dt.timedelta(hours=1)))
        conn.execute(update(deliveries).where(deliveries.c.id.in_(rows[13:15])).values(
            status="deferred", next_attempt_at=now - dt.timedelta(minutes=1)))
        conn.execute(update(sends).where(sends.c.id == second).values(status="cancelled"))
        claimed = conn.execute(select(func.count()).where(batches.c.claimed_at.is_not(None))).scalar()
        due = conn.execute(select(func.count()).select_from(deliveries.join(sends, sends.c.id == deliveries.c.send_id)).where(
            sends.c.status == "sending", or_(deliveries.c.status == "pending",
                                             and_(deliveries.c.status == "deferred", deliveries.c.next_attempt_at <= now)))).scalar()
        counted = ops.pending_count(conn, now)
    assert claimed == 3 and due == 95 - 10 - 3
    assert counted == due


def test_a_send_just_frozen_counts_every_reader_pending_before_and_after_a_claim(store_settings: Settings, store: Store) -> None:
    from newsletter.store.sends import summary

    add_readers(store, 25)
    result = run("queue", NEWEST, "--at", "now", "--yes")
    assert result.exit_code == 0, result.output
    with store.begin() as conn:
        send_id = ops.due_sends(conn, utcnow())[0].id
        assert ops.freeze(conn, send_id, 10, utcnow())
    with store.engine.connect() as conn:
        assert summary(conn, send_id).counts == {"pending": 25}  # no delivery row written yet
    with store.begin() as conn:
        claimed = ops.claim(conn, "scheduler-a", "outbox", utcnow(), skip_locked=False)
        assert isinstance(claimed, ops.Claimed) and len(claimed.rows) == 10
    with store.engine.connect() as conn:
        assert summary(conn, send_id).counts == {"pending": 25}  # ten rows now, fifteen still listed
        assert conn.execute(select(deliveries.c.id).where(deliveries.c.send_id == send_id)).scalars().all() == list(
            range(claimed.batch.first_delivery, claimed.batch.first_delivery + 10))


def test_in_doubt_lines_of_several_batches_say_the_total() -> None:
    from newsletter.cli.common import grouped

    lines = [f"send #2 batch {n}: 1 delivery(ies) in doubt; the lease of scheduler s1 ran out" for n in range(4)]
    assert grouped(lines) == ["send #2 batches 0, 1, 2, 3: 4 delivery(ies) in doubt; the lease of scheduler s1 ran out"]
    refused = [f"send #2 batch {n}: the outbox is full" for n in (0, 0, 1)]
    assert grouped(refused) == ["send #2 batches 0, 1 (3 times): the outbox is full"]


def test_progress_says_100_percent_only_when_all_are_done() -> None:
    from newsletter.cli.sending import _share
    from newsletter.store.sends import Progress

    assert _share(Progress(done=996, total=1000, per_minute=0, untried=4)) == "99%"
    assert _share(Progress(done=1000, total=1000, per_minute=0, untried=0)) == "100%"
