"""The scheduler: sends due issues to the list, each recipient exactly once,
and records one outcome per recipient as it happens.

Where the guarantee lives
-------------------------
Every delivery (one recipient of one send) ends with one outcome
(store.schema.DeliveryStatus): sent; failed, for good, with the server's code
and text; deferred, refused for now and tried again later; skipped,
unsubscribed since the send was frozen; or in doubt, when it may have been
accepted and only the editor may send it again.

1. Freeze (store.deliveries.freeze). When a send starts, one transaction moves
   it from queued to sending (a compare-and-set: one scheduler wins) and lists
   every active subscriber in numbered batches, each reader with the id of
   their delivery; a batch's first claim writes its deliveries.
2. Lease (store.deliveries.register / renew). A scheduler holds what it claims
   under a lease of `lease_seconds`, renewed with every recorded outcome and by
   a heartbeat. A lease that has run out is never renewed: a scheduler that
   wakes after it (SIGSTOP, a frozen VM) finds out before its next message
   (`may_send`) and stops without sending more. Paused inside a transaction,
   on PostgreSQL it would hold row locks the others need: the database ends
   any transaction of a scheduler left idle for `lease_seconds`
   (Store.end_idle_transactions). Process ids play no part: they
   repeat across containers that share a hostname. Leases are written in each
   scheduler's UTC clock, so machines sharing a database need clocks that agree
   to well within `lease_seconds`; a scheduler trusts its lease for only half
   of it after each renewal.
3. Claim (worker.py, store.deliveries.claim). Each of the scheduler's
   `concurrency` workers, on its own thread and connection, claims one batch
   at a time. A batch moves pending → in_flight in its own
   transaction before the provider is called: `FOR UPDATE SKIP LOCKED` on
   PostgreSQL, the write lock of `BEGIN IMMEDIATE` on SQLite, and in both a
   compare-and-set on the status. Subscribers unsubscribed since the freeze are
   skipped here.
4. Send and record (worker.Ledger, store.deliveries.settle). Before each
   message (each request, with SendGrid) the lease is checked and the pace
   (pace.py: max_per_second, max_per_hour, slower when the provider asks)
   waited for. SMTP and the outbox
   settle each recipient before the next goes on the wire, and with SMTP each
   outcome is committed at once: a crash, kill -9 or lost database leaves at
   most the one message that was on the wire unrecorded. A 5xx fails that
   recipient alone; a 4xx, or a connection lost before DATA, defers it, retried
   from `retry_after` seconds doubling until `retry_for_hours`, then failed
   with the last answer. SendGrid takes a request whole or not at all, so
   there the batch is the unit of doubt.
5. Finish (worker.Worker.finish, store.deliveries.finish). Only the scheduler still holding the claim
   closes the batch: done when every delivery is settled, claimable again
   otherwise (deferred ones at their retry time).
6. Recover (store.deliveries.recover). A batch in flight under a lease that ran
   out: with a per-message provider, its first unsettled delivery is in doubt
   and the rest are claimable; with SendGrid every unsettled one is in doubt;
   with the outbox (idempotent: a file per delivery) all go back to pending.
   On SQLite, outcomes are committed without an fsync (durable against a
   crash or kill -9, not a power cut), so a batch claimed before the machine
   last started has every unsettled delivery in doubt.
Nothing in doubt is sent again without the editor (`newsletter resolve SEND
--resend | --mark-sent`); failed ones only with `--retry-failed`. A send is
sent when every batch is done. An unexpected error in one send holds that
send with the error and the scheduler goes on with the others.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Row
from sqlalchemy.exc import SQLAlchemyError

from .config import Settings
from .messages import Issue, send_key
from .pace import Pace
from .providers import IDEMPOTENT, SETTLES_EACH, Provider
from .store import Store
from .store import deliveries as ops
from .store.deliveries import Retry
from .store.sends import active_count
from .store.schema import DeliveryStatus, SendStatus, sends, utcnow
from .tokens import Signer
from .worker import StoreLost, Worker, lost_store

MAX_BATCH = 1000  # SendGrid's limit per request; no provider gets more at once


def booted_at() -> dt.datetime | None:
    """When this machine last started (Linux's /proc/stat), naive UTC like every stored time; None if unknown."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            for line in stat:
                if line.startswith("btime "):
                    return dt.datetime.fromtimestamp(int(line.split()[1]), dt.UTC).replace(tzinfo=None)
    except (OSError, ValueError):
        pass
    return None


_COUNTERS = {DeliveryStatus.SENT: "sent", DeliveryStatus.FAILED: "failed", DeliveryStatus.DEFERRED: "deferred",
             DeliveryStatus.IN_DOUBT: "doubtful", DeliveryStatus.SKIPPED: "skipped"}


@dataclass
class RunReport:
    sent: int = 0
    skipped: int = 0  # unsubscribed (or bounced…) after the send was frozen
    failed: int = 0  # refused for good, one by one
    deferred: int = 0  # refused for now: tried again later
    doubtful: int = 0  # may have been accepted: for the editor
    batches: int = 0
    started: list[int] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    in_doubt: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    completed: list[int] = field(default_factory=list)  # sends that are now fully sent
    next_retry: dt.datetime | None = None
    lease_lost: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)  # workers count at once

    @property
    def settled(self) -> int:
        return self.sent + self.skipped + self.failed + self.deferred + self.doubtful

    def add(self, counter: str, amount: int) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + amount)

    def count(self, status: DeliveryStatus) -> None:
        self.add(_COUNTERS[status], 1)

    def note(self, kind: str, line: str) -> None:
        with self._lock:
            getattr(self, kind).append(line)


class Scheduler:
    def __init__(self, store: Store, settings: Settings, provider: Provider, secret: str,
                 progress: Callable[[int, int], None] | None = None):
        self.store = store
        self.settings = settings
        self.provider = provider
        self.signer = Signer(secret)
        self.progress = progress
        self.host = socket.gethostname()
        self.id = f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stop = threading.Event()  # set it to stop after the current batch (and any wait for the pace)
        self.lease = dt.timedelta(seconds=settings.lease_seconds)
        # A transaction of ours outliving the lease would hold up whoever takes over.
        store.end_idle_transactions(settings.lease_seconds)
        self.retry = Retry(dt.timedelta(seconds=settings.retry_after), dt.timedelta(hours=settings.retry_for_hours))
        self.pace = Pace(settings.max_per_second, settings.max_per_hour)
        self.report = RunReport()
        self.issues: dict[int, Issue] = {}
        self._beat: threading.Thread | None = None
        self._beat_done = threading.Event()
        self._lease_lock = threading.Lock()
        self._lease_ok_until = 0.0  # time.monotonic() until which the lease is surely ours
        self._lost = False
        self._total = 0
        self._progress_lock = threading.Lock()

    # -- the lease ----------------------------------------------------------
    def _renewed(self, started: float) -> None:
        # Counted from before the renewal was asked for, with a margin: a lease is only trusted while surely valid.
        self._lease_ok_until = started + self.lease.total_seconds() * 0.5

    def _renew(self) -> bool:
        with self._lease_lock:
            if self._lost:
                return False
            started = time.monotonic()
            with self.store.begin() as conn:
                ok = ops.renew(conn, self.id, utcnow(), self.lease)
            if ok:
                self._renewed(started)
            else:
                self._lost = True
            return ok

    def lease_held(self) -> bool:
        """Asked before each message: True only while this scheduler's lease surely holds."""
        if self._lost:
            return False
        if time.monotonic() < self._lease_ok_until:
            return True
        try:
            return self._renew()
        except SQLAlchemyError as exc:
            if self.lease_ran_out():
                return False
            raise lost_store(exc) from None

    def lease_ran_out(self) -> bool:
        """True (and the lease given up) when it was last renewed longer ago than it lasts: the
        process was paused, and a database error now is the database ending what it left open."""
        if time.monotonic() > self._lease_ok_until + self.lease.total_seconds() * 0.5:
            self._lost = True
        return self._lost

    def _register(self) -> None:
        started = time.monotonic()
        with self.store.begin() as conn:
            ops.register(conn, self.id, self.host, os.getpid(), utcnow(), self.lease)
        self._renewed(started)
        self._beat_done = threading.Event()
        interval = max(0.05, self.lease.total_seconds() / 4)

        def beat() -> None:
            while not self._beat_done.wait(interval):
                try:
                    if not self._renew():
                        return
                except Exception:  # noqa: BLE001 - a missed beat only shortens the lease
                    pass

        self._beat = threading.Thread(target=beat, name="scheduler-lease", daemon=True)
        self._beat.start()

    def _unregister(self) -> None:
        self._beat_done.set()
        if self._beat:
            self._beat.join()
        try:
            with self.store.begin() as conn:
                ops.unregister(conn, self.id)
        except SQLAlchemyError:
            pass  # the lease simply runs out

    # -- what the workers share -------------------------------------------------
    def counted(self, statuses: Iterable[DeliveryStatus]) -> None:
        """Outcomes a worker recorded: into the report, and the progress bar."""
        for status in statuses:
            self.report.count(status)
        if self.progress:
            with self._progress_lock:  # one worker at a time draws
                settled = self.report.settled
                self.progress(settled, max(self._total, settled))

    def load_issue(self, conn: Connection, send_id: int) -> Issue:
        """The frozen issue of a send, read once per run."""
        issue = self.issues.get(send_id)
        if issue is None:
            row = conn.execute(sends.select().where(sends.c.id == send_id)).one()
            issue = Issue(slug=row.issue_slug, subject=row.subject, html=row.html, text=row.text, send_id=row.id,
                          message_key=send_key(self.signer.token, row.id, row.created_at))
            self.issues[send_id] = issue  # two workers may both read it: the same either way
        return issue

    # -- the steps ------------------------------------------------------------
    def _recover(self, report: RunReport) -> None:
        booted = booted_at() if self.store.dialect == "sqlite" else None
        with self.store.read() as conn:
            stuck = ops.stuck(conn, self.id, utcnow())
        for batch in stuck:
            with self.store.begin() as conn:
                line = ops.recover(conn, batch, utcnow(), IDEMPOTENT, SETTLES_EACH, booted)
            if line:
                report.in_doubt.append(line)
        with self.store.begin() as conn:
            ops.forget_expired(conn, utcnow())

    def _hold_if_overdue(self, conn: Connection, send: Row[Any], now: dt.datetime, since: dt.datetime,
                         report: RunReport) -> bool:
        grace = dt.timedelta(hours=self.settings.grace_hours)
        if send.late_ok or now - since <= grace:
            return False
        hours = (now - since).total_seconds() / 3600
        note = (f"held: found {hours:.1f} hours late (grace {self.settings.grace_hours:g} h); "
                f"send anyway with `newsletter resolve {send.id} --send-late`, or cancel it")
        if ops.hold(conn, send, note):
            report.held.append(f"send #{send.id} ({send.issue_slug}): {note}")
        return True

    def _start(self, report: RunReport) -> None:
        """Freeze every due queued send into deliveries and batches; hold the overdue ones."""
        now = utcnow()
        with self.store.begin() as conn:
            due = ops.due_sends(conn, now)
            for send in ops.stalled_sends(conn):
                if send.last_progress_at:
                    self._hold_if_overdue(conn, send, now, send.last_progress_at, report)
            report.completed.extend(ops.finish_settled_sends(conn))
        if not due:
            return
        size = min(self.settings.batch_size, MAX_BATCH)
        if SETTLES_EACH.get(self.provider.name, False):
            # Sent one by one, a small list is cut finer, so that every worker has a batch of its own
            # (a batch provider keeps whole requests: one request of 40 beats four of 10).
            with self.store.read() as conn:
                readers = active_count(conn)
            size = max(1, min(size, -(-readers // self.settings.concurrency)))
        for send in due:
            with self.store.begin() as conn:
                if self._hold_if_overdue(conn, send, now, send.scheduled_at, report):
                    continue
                if ops.freeze(conn, send.id, size, now):
                    report.started.append(send.id)

    def _work(self) -> None:
        """Run the workers, each on its own thread, until none has anything left; the first error stops them all."""
        errors: list[BaseException] = []

        def run(worker: Worker) -> None:
            try:
                worker.run()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                errors.append(exc)
                self.stop.set()

        threads = [threading.Thread(target=run, args=(Worker(self),), name=f"scheduler-worker-{n}", daemon=True)
                   for n in range(self.settings.concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)  # in slices, so the main thread still takes SIGTERM
        if errors:
            raise errors[0]

    # -- running --------------------------------------------------------------
    def run_once(self) -> RunReport:
        """Send everything that is due, then return. Stops early, after each
        worker's current batch, when `stop` is set, and at once when the lease is lost."""
        report = self.report = RunReport()
        try:
            self._register()
        except SQLAlchemyError as exc:
            raise lost_store(exc) from None
        try:
            self._recover(report)
            self._start(report)
            with self.store.engine.connect() as conn:
                self._total = ops.pending_count(conn, utcnow())
            self._work()
            report.lease_lost = self._lost
        except SQLAlchemyError as exc:
            raise lost_store(exc) from None
        finally:
            self._unregister()
        touched = set(report.started) | set(self.issues)
        with self.store.engine.connect() as conn:
            report.completed = sorted(set(report.completed) | set(ops.sends_with(conn, touched, SendStatus.SENT)))
            report.next_retry = ops.next_retry(conn)
        return report

    def run_forever(self, poll_seconds: float = 30.0, on_report: Callable[[RunReport], None] | None = None) -> None:
        while not self.stop.is_set():
            self._lost = False
            self.id = f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"  # a fresh lease for each run
            report = self.run_once()
            if on_report:
                on_report(report)
            self.stop.wait(poll_seconds)


__all__ = ["MAX_BATCH", "RunReport", "Scheduler", "StoreLost", "booted_at"]
