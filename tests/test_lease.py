"""Ownership by lease: a paused scheduler, kill -9 at random moments, a database that goes away."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import insert
from sqlalchemy.engine import make_url

from newsletter.cli import cli
from newsletter.config import Settings
from newsletter.store import Store
from newsletter.store import subscribers as ops
from newsletter.store.schema import subscribers, utcnow

from .sendgrid_server import API_KEY, SendGridServer

NEWEST = "2017-03-06-happy-families-lets-talk-about-new-labour"
LEASE = 3.0  # seconds: short for a test, yet long enough for a loaded machine


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def readers(store: Store, count: int) -> set[str]:
    now = utcnow()
    with store.begin() as conn:
        conn.execute(insert(subscribers), [
            dict(email=f"reader{n}@example.net", email_key=f"reader{n}@example.net", name="", attributes={}, status="active",
                 source="test", created_at=now, updated_at=now, status_changed_at=now) for n in range(count)])
    with store.engine.connect() as conn:
        return {s.email for s in ops.iter_subscribers(conn, ("active",))}


def provider_env(server, concurrency: int = 1) -> dict[str, str]:
    """Settings that send through this test server (SMTP or SendGrid), ten at a time."""
    if isinstance(server, SendGridServer):
        chosen = {"NEWSLETTER_PROVIDER": "sendgrid", "SENDGRID_API_KEY": API_KEY, "NEWSLETTER_SENDGRID_HOST": server.host}
    else:
        chosen = {"NEWSLETTER_PROVIDER": "smtp", "NEWSLETTER_SMTP_URL": server.url}
    return {**chosen, "NEWSLETTER_BATCH_SIZE": "10", "NEWSLETTER_LEASE_SECONDS": str(LEASE),
            "NEWSLETTER_CONCURRENCY": str(concurrency)}


def received(server) -> list[str]:
    """Every address the server took a message for, in order, repeats included."""
    return server.emails() if isinstance(server, SendGridServer) else server.recorder.recipients()


def slow_down(server, seconds: float) -> None:
    """Make the server take this long over each message (SMTP) or request (SendGrid)."""
    if isinstance(server, SendGridServer):
        server.delay = seconds
    else:
        server.recorder.delay = seconds


SPAWNED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_scheduler_left_behind() -> Iterator[None]:
    """Whatever a test ends with, no scheduler it started outlives it (stopped or not)."""
    yield
    while SPAWNED:
        process = SPAWNED.pop()
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
        if process.stdout is not None and not process.stdout.closed:
            process.communicate()  # its pipe read and closed: nothing left for the garbage collector to warn of
        else:
            process.wait()


def scheduler(settings: Settings, server, *options: str, concurrency: int = 1) -> subprocess.Popen:
    env = {**os.environ, **provider_env(server, concurrency)}
    process = subprocess.Popen([sys.executable, "-m", "newsletter", "scheduler", *(options or ("--once",))], cwd=settings.root,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    SPAWNED.append(process)
    return process


def wait_for(condition, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.002)


def test_a_scheduler_paused_past_its_lease_sends_nothing_more_when_it_wakes(newsletter_with_list: Settings, store: Store,
                                                                            smtp_server) -> None:
    everyone = readers(store, 60)
    _, woke = pause_past_the_lease(newsletter_with_list, smtp_server, freeze_outside_a_write, sent_before=15)
    assert "lease ran out" in woke, woke
    everyone_once_or_in_doubt(smtp_server.recorder.recipients(), everyone)


def pause_past_the_lease(settings: Settings, smtp_server, freeze, sent_before: int) -> tuple[subprocess.Popen, str]:
    """Queue the issue, start a scheduler, `freeze` it once it sent `sent_before`, let a second one
    take over and finish after the lease ran out, then wake the first: (the first, what it said)."""
    assert run("queue", NEWEST, "--at", "now", "--yes").exit_code == 0
    recorder = smtp_server.recorder
    recorder.delay = 0.03
    first = scheduler(settings, smtp_server)
    wait_for(lambda: len(recorder.recipients()) >= sent_before)
    freeze(first, settings)  # a frozen VM
    try:
        time.sleep(LEASE + 0.5)
        recorder.delay = 0
        second = scheduler(settings, smtp_server)
        output = second.communicate(timeout=120)[0]
        assert second.returncode == 0, output
    finally:
        first.send_signal(signal.SIGCONT)
    return first, first.communicate(timeout=120)[0]


def everyone_once_or_in_doubt(delivered: list[str], everyone: set[str]) -> None:
    """Nobody got two copies; everyone got one but at most one reader, whose copy was on the wire and is in doubt."""
    received = Counter(delivered)
    assert set(received.values()) == {1}, "nobody got two copies"
    detail = json.loads(run("sends", "1", "--json").output)
    doubtful = {m["email"] for m in detail["missed"] if m["outcome"] == "in_doubt"}
    # Frozen with a message about to go, the scheduler may wake to find its lease gone and send
    # nothing: that one reader is in doubt, for the editor, and was never sent again.
    assert len(doubtful) <= 1, "at most what was on the wire is in doubt"
    assert set(received) | doubtful == everyone, "and nobody was left out"
    counts = detail["counts"]
    assert counts["pending"] == 0 and counts["sent"] + counts["in_doubt"] == len(everyone)


def stopped(process: subprocess.Popen) -> bool:
    """True once every thread of the process is stopped (state T in /proc)."""
    tasks = list(Path(f"/proc/{process.pid}/task").iterdir())
    return all(Path(task, "stat").read_text().rpartition(")")[2].split()[0] in "Tt" for task in tasks)


def freeze_outside_a_write(process: subprocess.Popen, settings: Settings) -> None:
    """SIGSTOP the process at a moment it holds no SQLite write lock.

    A process frozen inside a write transaction keeps SQLite's one write lock
    and nothing can take it from it (no lease helps there: the scheduler then
    says the database stayed locked). This test is about the lease, so it
    freezes the scheduler between transactions, as it nearly always is."""
    url = make_url(settings.resolved_database_url)
    for _ in range(200):
        process.send_signal(signal.SIGSTOP)
        wait_for(lambda: stopped(process))  # a signal is delivered a moment after it is sent
        if url.get_backend_name() != "sqlite":
            return  # PostgreSQL ends a transaction left idle past the lease (see the next test)
        probe = sqlite3.connect(url.database or "", timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:
            process.send_signal(signal.SIGCONT)
            time.sleep(random.uniform(0, 0.005))
        finally:
            probe.close()
    raise AssertionError("the scheduler held the write lock at every try")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_scheduler_frozen_inside_a_transaction_holds_up_no_other(newsletter_with_list: Settings, store: Store,
                                                                 smtp_server) -> None:
    """Its row locks would stall every other scheduler for as long as the pause: the
    database ends its transaction once the lease is out, and it wakes to one line."""
    everyone = readers(store, 60)
    first, woke = pause_past_the_lease(newsletter_with_list, smtp_server, freeze_inside_a_transaction, sent_before=5)
    assert first.returncode == 0 and "lease ran out" in woke and "Traceback" not in woke, woke
    everyone_once_or_in_doubt(smtp_server.recorder.recipients(), everyone)


def recording_an_outcome(settings: Settings) -> bool:
    """True when a connection to this database sits inside a transaction that has written a delivery
    (and holds its row lock, which recovering that batch needs)."""
    import psycopg

    url = make_url(settings.resolved_database_url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid "
                           "JOIN pg_class c ON c.oid = l.relation WHERE a.datname = current_database() "
                           "AND a.state = 'idle in transaction' AND c.relname = 'deliveries' "
                           "AND l.mode = 'RowExclusiveLock'").fetchone()
    return bool(row and row[0])


def freeze_inside_a_transaction(process: subprocess.Popen, settings: Settings) -> None:
    """SIGSTOP the process at a moment it is recording an outcome, inside its PostgreSQL transaction."""
    for _ in range(1000):
        process.send_signal(signal.SIGSTOP)
        wait_for(lambda: stopped(process))
        if recording_an_outcome(settings):
            return
        process.send_signal(signal.SIGCONT)
        time.sleep(random.uniform(0, 0.003))
    raise AssertionError("the scheduler was never caught inside a transaction")


def kill_at_random_then_recover(settings: Settings, store: Store, server, trials: int) -> None:
    """Kill -9 the scheduler, with two workers, at random moments; rerun it, resend what is in doubt: nobody is lost.

    SMTP settles each message before the next, so a kill leaves at most the one
    on the wire per connection in doubt and costs at most that many duplicates;
    SendGrid takes a request whole, so there a batch (ten here) is the unit of doubt."""
    smtp = not isinstance(server, SendGridServer)
    workers = 2
    doubt_unit = workers * (1 if smtp else 10)
    everyone = readers(store, 40)
    rng = random.Random(os.environ.get("KILL_SEED", "8"))
    for trial in range(trials):
        assert run("queue", NEWEST, "--at", "now", "--yes", "--again").exit_code == 0
        before = len(received(server))
        slow_down(server, 0.01 if smtp else 0.05)
        victim = scheduler(settings, server, concurrency=workers)
        target = rng.randrange(0, len(everyone))
        wait_for(lambda: len(received(server)) - before >= target or victim.poll() is not None)  # noqa: B023
        time.sleep(rng.uniform(0, 0.02 if smtp else 0.08))
        if victim.poll() is None:
            victim.kill()  # the scheduler process itself, SIGKILL
        victim.communicate()
        slow_down(server, 0)
        time.sleep(LEASE + 0.3)
        rerun = scheduler(settings, server)
        output = rerun.communicate(timeout=120)[0]
        assert rerun.returncode == 0, output
        send_id = trial + 1
        detail = json.loads(run("sends", str(send_id), "--json").output)
        assert detail["counts"]["in_doubt"] <= doubt_unit, "at most what was on the wire is in doubt"
        if detail["counts"]["in_doubt"]:
            assert run("resolve", str(send_id), "--resend").exit_code == 0
            again = scheduler(settings, server)
            assert again.communicate(timeout=120)[0] is not None and again.returncode == 0
        detail = json.loads(run("sends", str(send_id), "--json").output)
        assert detail["status"] == "sent" and detail["counts"]["sent"] == len(everyone), detail
        got = Counter(received(server)[before:])
        assert set(got) == everyone, f"trial {trial}: nobody lost"
        assert sum(got.values()) - len(everyone) <= doubt_unit, f"trial {trial}: no more duplicates than one kill's doubt"


def test_kill_9_at_random_moments_loses_no_one_and_doubles_at_most_one_per_connection_per_kill(
        newsletter_with_list: Settings, store: Store, smtp_server) -> None:
    kill_at_random_then_recover(newsletter_with_list, store, smtp_server, trials=6)


def test_kill_9_at_random_moments_with_sendgrid_loses_no_one(newsletter_with_list: Settings, store: Store,
                                                             sendgrid_server: SendGridServer) -> None:
    kill_at_random_then_recover(newsletter_with_list, store, sendgrid_server, trials=5)


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_database_going_away_mid_send_is_one_line_and_nothing_delivered_goes_twice(
        newsletter_with_list: Settings, store: Store, smtp_server, database_url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    everyone = readers(store, 60)
    assert run("queue", NEWEST, "--at", "now", "--yes").exit_code == 0
    recorder = smtp_server.recorder
    recorder.delay = 0.03
    victim = scheduler(newsletter_with_list, smtp_server)
    wait_for(lambda: len(recorder.recipients()) >= 15)
    url = make_url(database_url)
    admin = psycopg.connect(host=url.host, port=url.port or 5432, user=url.username, dbname="postgres", autocommit=True)
    try:
        admin.execute(f'ALTER DATABASE "{url.database}" WITH ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (url.database,))
        output = victim.communicate(timeout=120)[0]
        assert victim.returncode != 0
        assert "lost the database while sending" in output and "Traceback" not in output, output
        assert "@example.net" not in output, "no subscriber data in the error"
    finally:
        admin.execute(f'ALTER DATABASE "{url.database}" WITH ALLOW_CONNECTIONS true')
        admin.close()
    recorder.delay = 0
    time.sleep(LEASE + 0.3)
    rerun = scheduler(newsletter_with_list, smtp_server)
    assert rerun.communicate(timeout=120)[0] is not None and rerun.returncode == 0
    received = Counter(recorder.recipients())
    assert set(received.values()) == {1}, "nothing delivered is sent again"
    detail = json.loads(run("sends", "1", "--json").output)
    doubtful = {m["email"] for m in detail["missed"] if m["outcome"] == "in_doubt"}
    assert len(doubtful) <= 1 and detail["counts"]["sent"] + len(doubtful) == len(everyone)
    assert set(received) >= everyone - doubtful, "everyone else got their copy"


def test_a_scheduler_that_lost_its_lease_leaves_the_new_owners_claim_alone(newsletter_with_list: Settings, store: Store) -> None:
    import dataclasses

    from sqlalchemy import select, update

    from newsletter.providers import Outcomes
    from newsletter.scheduler import Scheduler
    from newsletter.store.schema import DeliveryStatus, batches, schedulers

    settings = dataclasses.replace(newsletter_with_list, batch_size=1000, lease_seconds=LEASE, concurrency=1)
    everyone = readers(store, 20)
    assert run("queue", NEWEST, "--at", "now", "--yes").exit_code == 0
    seen: list[str] = []

    class OneByOne:
        name = "smtp"

        def __init__(self, on_first=None) -> None:
            self.on_first = on_first

        def send(self, issue, recipients, outcomes: Outcomes) -> dict[int, str]:
            for recipient in recipients:
                if not outcomes.may_send():
                    return {}
                seen.append(recipient.email)
                outcomes.settle(recipient, DeliveryStatus.SENT)
                if self.on_first:
                    self.on_first, hook = None, self.on_first
                    hook()
            return {}

    first = Scheduler(store, settings, OneByOne(), "secret")
    second = Scheduler(store, settings, OneByOne(), "secret")

    def paused_past_the_lease() -> None:
        with store.begin() as conn:  # the lease runs out while the first is frozen…
            conn.execute(update(schedulers).where(schedulers.c.id == first.id).values(lease_until=utcnow()))
        first._lease_ok_until = 0.0  # …and its own clock says so too
        second._register()
        second._recover(second.report)
        taken.append(second_worker.claim())  # the second takes the batch over
        assert taken[0] is not None

    from newsletter.worker import Worker

    second_worker = Worker(second)
    taken: list = []
    first.provider = OneByOne(paused_past_the_lease)
    report = first.run_once()
    assert report.lease_lost
    with store.engine.connect() as conn:
        batch = conn.execute(select(batches)).one()
    assert batch.status == "in_flight" and batch.claimed_by == second.id, "the second scheduler's claim stands"
    second_worker.send(taken[0])
    second_worker.close()
    second._unregister()
    doubtful = {m["email"] for m in json.loads(run("sends", "1", "--json").output)["missed"] if m["outcome"] == "in_doubt"}
    assert len(doubtful) == 1, "what the first may have had on the wire when it froze"
    assert set(Counter(seen).values()) == {1} and set(seen) == everyone - doubtful, "everyone else once"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_database_locked_by_a_stopped_process_is_one_line_not_a_hang(newsletter_with_list: Settings, store: Store,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's write lock held by a frozen process cannot be taken away: say so, and stop."""
    from newsletter.store import db

    monkeypatch.setattr(db, "BUSY_SECONDS", 1)
    store.dispose()  # connections made from here on wait one second, not thirty
    assert run("queue", NEWEST, "--at", "now", "--yes").exit_code == 0
    frozen = sqlite3.connect(make_url(newsletter_with_list.resolved_database_url).database, isolation_level=None)
    frozen.execute("BEGIN IMMEDIATE")
    try:
        for command in (["scheduler", "--once"], ["subscribers", "add", "someone@example.org"]):
            result = run(*command)
            assert result.exit_code == 1, result.output
            assert "stayed locked by another process" in result.output, result.output
            assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    finally:
        frozen.execute("ROLLBACK")
        frozen.close()
    assert run("scheduler", "--once").exit_code == 0, "and once it is free, the send goes out"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("power_cut", [False, True], ids=["killed", "power-cut"])
def test_after_a_power_cut_the_unrecorded_rest_of_a_batch_is_in_doubt_not_sent_again(
        newsletter_with_list: Settings, store: Store, monkeypatch: pytest.MonkeyPatch, power_cut: bool) -> None:
    """SQLite outcomes are committed without an fsync: a kill -9 keeps them, a power cut may not."""
    import dataclasses

    from newsletter import scheduler as scheduling
    from newsletter.providers import Outcomes
    from newsletter.scheduler import Scheduler
    from newsletter.store.schema import DeliveryStatus

    settings = dataclasses.replace(newsletter_with_list, batch_size=10, lease_seconds=LEASE, concurrency=1)
    assert run("queue", NEWEST, "--at", "now", "--yes").exit_code == 0
    sent: list[str] = []

    class Dies:
        name = "smtp"

        def send(self, issue, recipients, outcomes: Outcomes) -> dict[int, str]:
            for n, recipient in enumerate(recipients):
                if n == 3:
                    raise KeyboardInterrupt("the machine stops")
                sent.append(recipient.email)
                outcomes.settle(recipient, DeliveryStatus.SENT)
            return {}

    class Sends(Dies):
        def send(self, issue, recipients, outcomes: Outcomes) -> dict[int, str]:
            for recipient in recipients:
                sent.append(recipient.email)
                outcomes.settle(recipient, DeliveryStatus.SENT)
            return {}

    with pytest.raises(KeyboardInterrupt):
        Scheduler(store, settings, Dies(), "secret").run_once()
    if power_cut:
        monkeypatch.setattr(scheduling, "booted_at", utcnow)  # the machine started after that claim
    time.sleep(LEASE + 0.3)  # the lease runs out
    Scheduler(store, settings, Sends(), "secret").run_once()
    counts = json.loads(run("sends", "--json").output)[0]["counts"]
    assert counts["in_doubt"] == (7 if power_cut else 1), counts
    assert len(sent) == len(set(sent)), "nobody twice"
    assert counts["sent"] == len(sent) and counts["pending"] == 0, "everyone else got theirs, recorded"


def test_recovery_while_the_late_schedulers_workers_still_finish_neither_deadlocks_nor_doubles(
        newsletter_with_list: Settings, store: Store) -> None:
    """Four workers of a scheduler whose lease ran out finish their batches while another recovers them."""
    import dataclasses
    import threading

    from sqlalchemy import update

    from newsletter.providers import Outcomes
    from newsletter.scheduler import Scheduler
    from newsletter.store.schema import DeliveryStatus, schedulers

    settings = dataclasses.replace(newsletter_with_list, batch_size=10, lease_seconds=LEASE, concurrency=4)
    everyone = readers(store, 24)
    assert run("queue", NEWEST, "--at", "now", "--yes").exit_code == 0
    seen: list[str] = []
    lock = threading.Lock()
    expired = threading.Event()
    class Late:
        name = "smtp"

        def send(self, issue, recipients, outcomes: Outcomes) -> dict[int, str]:
            for n, recipient in enumerate(recipients):
                with lock:
                    if n == 2 and not expired.is_set():
                        expired.set()
                        with store.begin() as conn:  # the lease runs out: the others are mid-batch
                            conn.execute(update(schedulers).where(schedulers.c.id == first.id).values(lease_until=utcnow()))
                        first._lease_ok_until = 0.0
                        second._register()
                        second._recover(second.report)  # meanwhile the other workers settle and finish
                        second._unregister()
                if not outcomes.may_send():
                    return {}
                seen.append(recipient.email)
                outcomes.settle(recipient, DeliveryStatus.SENT)
            return {}

    second = Scheduler(store, settings, Late(), "secret")  # it only recovers
    first = Scheduler(store, settings, Late(), "secret")
    report = first.run_once()  # no StoreLost: a deadlock, if PostgreSQL found one, was tried again
    assert report.lease_lost
    Scheduler(store, dataclasses.replace(settings, concurrency=1), Late(), "secret").run_once()
    detail = json.loads(run("sends", "1", "--json").output)
    doubtful = {m["email"] for m in detail["missed"] if m["outcome"] == "in_doubt"}
    assert set(Counter(seen).values()) == {1}, "nobody twice"
    assert set(seen) | doubtful == everyone and detail["counts"]["pending"] == 0
