"""kill -9 in the middle of a send, and two schedulers at once: still never two copies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from sqlalchemy import select

from newsletter.config import Settings
from newsletter.store import Store
from newsletter.store.schema import batches, deliveries, subscribers

from .conftest import active_emails, add_readers, queue_now, run


def smtp_env(server) -> dict[str, str]:
    """Settings for scheduler processes that send through the test SMTP server, ten at a time, one connection."""
    return {"NEWSLETTER_PROVIDER": "smtp", "NEWSLETTER_SMTP_URL": server.url, "NEWSLETTER_BATCH_SIZE": "10",
            "NEWSLETTER_LEASE_SECONDS": str(LEASE), "NEWSLETTER_CONCURRENCY": "1"}


LEASE = 3.0  # seconds: short, so that a rerun may take over a killed scheduler's batch soon


def scheduler_process(settings: Settings, *options: str, **env: str) -> subprocess.Popen:
    """`newsletter scheduler` in its own process (--once unless other options are given)."""
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "scheduler", *(options or ("--once",))],
        cwd=settings.root, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def wait_for(condition, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.002)


def test_kill_9_mid_send_then_rerun_sends_no_one_twice(newsletter_with_list: Settings, store: Store, smtp_server) -> None:
    add_readers(store, 64)
    env = smtp_env(smtp_server)
    queue_now()
    recorder = smtp_server.recorder
    recorder.delay = 0.05
    victim = scheduler_process(newsletter_with_list, **env)
    # Kill it halfway through its third batch: that batch is with the SMTP server.
    wait_for(lambda: len(recorder.recipients()) >= 25)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate()
    recorder.delay = 0

    time.sleep(LEASE + 0.5)  # its lease runs out
    rerun = scheduler_process(newsletter_with_list, **env)
    output = rerun.communicate(timeout=120)[0]
    assert rerun.returncode == 0, output
    assert "in doubt" in output

    received = Counter(recorder.recipients())
    assert received and max(received.values()) == 1, "nobody may get two copies"
    with store.engine.connect() as conn:
        doubtful = set(conn.execute(
            select(subscribers.c.email).join(deliveries, deliveries.c.subscriber_id == subscribers.c.id)
            .where(deliveries.c.status == "in_doubt")
        ).scalars())
    assert len(doubtful) == 1, "only the message on the wire is in doubt, never its batch"
    assert active_emails(store) - doubtful <= set(received), "everyone else gets their copy"
    detail = run("sends", "1").output
    assert "in doubt 1" in detail and f"in doubt  {doubtful.pop()}:" in detail, detail

    assert run("resolve", "1", "--mark-sent").exit_code == 0
    assert json.loads(run("sends", "--json").output)[0]["counts"]["in_doubt"] == 0


def test_kill_9_with_the_outbox_has_no_doubt_and_everyone_gets_one_file(newsletter_with_list: Settings, store: Store) -> None:
    add_readers(store, 400)
    env = {"NEWSLETTER_BATCH_SIZE": "20", "NEWSLETTER_LEASE_SECONDS": str(LEASE)}
    queue_now()
    victim = scheduler_process(newsletter_with_list, **env)
    outbox = newsletter_with_list.outbox_path
    wait_for(lambda: len(list(outbox.glob("send-1/*.eml"))) >= 150)
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate()
    time.sleep(LEASE + 0.5)  # its lease runs out
    rerun = scheduler_process(newsletter_with_list, **env)
    output = rerun.communicate(timeout=120)[0]
    assert rerun.returncode == 0 and "in doubt" not in output, output
    files = sorted(outbox.glob("send-1/*.eml"))
    assert len(files) == len(active_emails(store)), "one file per reader, never two"
    assert not list(outbox.rglob(".*.tmp")), "no half-written message left behind"


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_schedulers_at_once_on_postgresql_send_each_reader_once(
    newsletter_with_list: Settings, store: Store, smtp_server, database_url: str
) -> None:
    assert store.dialect == "postgresql"
    add_readers(store, 300)
    queue_now()
    smtp_server.recorder.delay = 0.002
    both = [scheduler_process(newsletter_with_list, "--once", **smtp_env(smtp_server)) for _ in range(2)]
    outputs = [p.communicate(timeout=180)[0] for p in both]
    assert [p.returncode for p in both] == [0, 0], outputs
    received = Counter(smtp_server.recorder.recipients())
    assert set(received) == active_emails(store)
    assert set(received.values()) == {1}
    with store.engine.connect() as conn:
        claimers = set(conn.execute(select(batches.c.claimed_by)).scalars())
    assert len(claimers) == 2, "both schedulers did part of the work"


def test_sigterm_stops_the_scheduler_after_its_current_batch(newsletter_with_list: Settings, store: Store, smtp_server) -> None:
    add_readers(store, 64)
    queue_now()
    recorder = smtp_server.recorder
    recorder.delay = 0.05
    running = scheduler_process(newsletter_with_list, "--poll", "1", **smtp_env(smtp_server))
    wait_for(lambda: len(recorder.recipients()) >= 15)
    running.send_signal(signal.SIGTERM)
    output = running.communicate(timeout=60)[0]
    assert running.returncode == 0 and "Scheduler stopped" in output, output
    delivered = len(recorder.recipients())
    assert delivered % 10 == 0 and delivered < len(active_emails(store)), "it finished its batch, then stopped"
    with store.engine.connect() as conn:
        assert set(conn.execute(select(batches.c.status)).scalars()) == {"done", "pending"}, "nothing left in flight or in doubt"
