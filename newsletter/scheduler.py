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
   it from queued to sending (a compare-and-set: one scheduler wins) and writes
   one delivery per active subscriber, grouped into numbered batches.
2. Lease (store.deliveries.register / renew). A scheduler holds what it claims
   under a lease of `lease_seconds`, renewed with every recorded outcome and by
   a heartbeat. A lease that has run out is never renewed: a scheduler that
   wakes after it (SIGSTOP, a frozen VM) finds out before its next message
   (`may_send`) and stops without sending more. Process ids play no part: they
   repeat across containers that share a hostname. Leases are written in each
   scheduler's UTC clock, so machines sharing a database need clocks that agree
   to well within `lease_seconds`; a scheduler trusts its lease for only half
   of it after each renewal.
3. Claim (store.deliveries.claim). A batch moves pending → in_flight in its own
   transaction before the provider is called: `FOR UPDATE SKIP LOCKED` on
   PostgreSQL, the write lock of `BEGIN IMMEDIATE` on SQLite, and in both a
   compare-and-set on the status. Subscribers unsubscribed since the freeze are
   skipped here.
4. Send and record (Ledger, store.deliveries.settle). SMTP and the outbox
   settle each recipient before the next goes on the wire, and with SMTP each
   outcome is committed at once: a crash, kill -9 or lost database leaves at
   most the one message that was on the wire unrecorded. A 5xx fails that
   recipient alone; a 4xx, or a connection lost before DATA, defers it, retried
   from `retry_after` seconds doubling until `retry_for_hours`, then failed
   with the last answer. SendGrid takes a request whole or not at all, so
   there the batch is the unit of doubt.
5. Finish (store.deliveries.finish). Only the scheduler still holding the claim
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
from collections.abc import Callable
from dataclasses import dataclass, field

from typing import Any

from sqlalchemy import Connection, Row
from sqlalchemy.exc import SQLAlchemyError

from .config import Settings
from .errors import NewsletterError
from .messages import Issue, Recipient, send_key
from .providers import IDEMPOTENT, SETTLES_EACH, DeliveryFailed, OutcomeUnknown, Provider
from .store import Store
from .store.db import describe_failure, for_writing
from .store import deliveries as ops
from .store.deliveries import Claimed, Outcome, Retry
from .store.schema import DeliveryStatus, SendStatus, sends, utcnow
from .tokens import Signer, unsubscribe_url

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


class StoreLost(NewsletterError):
    """The database went away mid-send; what was recorded stands, the rest is resolved on restart."""


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

    @property
    def settled(self) -> int:
        return self.sent + self.skipped + self.failed + self.deferred + self.doubtful

    def count(self, status: DeliveryStatus) -> None:
        name = {DeliveryStatus.SENT: "sent", DeliveryStatus.FAILED: "failed", DeliveryStatus.DEFERRED: "deferred",
                DeliveryStatus.IN_DOUBT: "doubtful", DeliveryStatus.SKIPPED: "skipped"}[status]
        setattr(self, name, getattr(self, name) + 1)


class Ledger:
    """The Outcomes a provider reports to (see providers/__init__.py), for one claimed batch."""

    def __init__(self, scheduler: Scheduler, claimed: Claimed, report: RunReport):
        self.scheduler = scheduler
        self.claimed = claimed
        self.report = report
        self.rows = {row.delivery_id: row for row in claimed.rows}
        self.settled: set[int] = set()
        provider = claimed.batch.provider or ""
        # Idempotent providers can repeat a delivery harmlessly: their outcomes are recorded with the batch.
        self.at_once = not IDEMPOTENT.get(provider, False)
        self.buffer: list[Outcome] = []

    def settle(self, recipient: Recipient, status: DeliveryStatus, reason: str = "") -> None:
        delivery_id = recipient.delivery_id
        if delivery_id is None or delivery_id in self.settled:
            return
        self.settled.add(delivery_id)
        row = self.rows[delivery_id]
        self.buffer.append(Outcome(delivery_id, status, reason, row.attempts, row.deferred_since))
        if self.at_once:
            self.flush()

    def settle_rest(self, recipients: list[Recipient], status: DeliveryStatus, reason: str) -> None:
        for recipient in recipients:
            if recipient.delivery_id not in self.settled:
                self.settled.add(recipient.delivery_id or 0)
                row = self.rows[recipient.delivery_id or 0]
                self.buffer.append(Outcome(row.delivery_id, status, reason, row.attempts, row.deferred_since))
        self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        outcomes, self.buffer = self.buffer, []
        recorded = self.scheduler._record(outcomes)
        for status in recorded:
            self.report.count(status)
        self.scheduler._progress(self.report)

    def may_send(self) -> bool:
        return self.scheduler._lease_held()


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
        self.stop = threading.Event()  # set it to stop after the current batch
        self.lease = dt.timedelta(seconds=settings.lease_seconds)
        self.retry = Retry(dt.timedelta(seconds=settings.retry_after), dt.timedelta(hours=settings.retry_for_hours))
        self._issues: dict[int, Issue] = {}
        self._beat: threading.Thread | None = None
        self._beat_done = threading.Event()
        self._lease_lock = threading.Lock()
        self._lease_ok_until = 0.0  # time.monotonic() until which the lease is surely ours
        self._lost = False
        self._total = 0
        self._recording: Connection | None = None

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

    def _lease_held(self) -> bool:
        """Asked before each message: True only while this scheduler's lease surely holds."""
        if self._lost:
            return False
        if time.monotonic() < self._lease_ok_until:
            return True
        try:
            return self._renew()
        except SQLAlchemyError as exc:
            raise self._lost_store(exc) from None

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

    # -- recording ------------------------------------------------------------
    def _lost_store(self, exc: Exception) -> StoreLost:
        return StoreLost(f"lost the database while sending ({describe_failure(exc)}); what was recorded stands: "
                         "run the scheduler again when it is back, and check `newsletter sends` for anything in doubt")

    def _record(self, outcomes: list[Outcome]) -> list[DeliveryStatus]:
        """Outcomes committed before the provider puts the next message on the wire."""
        try:
            conn = self._recorder()
            with conn.begin():
                return ops.settle(conn, outcomes, utcnow(), self.retry)
        except SQLAlchemyError as exc:
            raise self._lost_store(exc) from None

    def _recorder(self) -> Connection:
        """The one connection outcomes are recorded on, kept open for the run (a commit per
        message is most of a message's cost). On SQLite its commits skip the fsync
        (synchronous=NORMAL in WAL mode): durable against a crash or kill -9 of this
        process, not against a power cut, after which `recover` holds the whole
        unsettled rest of a claimed batch in doubt (see store.deliveries.recover)."""
        if self._recording is None:
            conn = for_writing(self.store.engine.connect())
            self._synchronous(conn, "NORMAL")
            self._recording = conn
        return self._recording

    def _close_recorder(self) -> None:
        conn, self._recording = self._recording, None
        if conn is None:
            return
        try:
            self._synchronous(conn, "FULL")  # before it goes back to the pool
            conn.close()
        except (SQLAlchemyError, OSError, ValueError):
            conn.invalidate()

    def _synchronous(self, conn: Connection, level: str) -> None:
        # Outside any transaction, on the driver's own connection: SQLite refuses it inside one.
        if self.store.dialect == "sqlite":
            conn.connection.driver_connection.execute(f"PRAGMA synchronous={level}")  # type: ignore[union-attr]

    def _progress(self, report: RunReport) -> None:
        if self.progress:
            self.progress(report.settled, max(self._total, report.settled))

    # -- the steps ------------------------------------------------------------
    def _recover(self, report: RunReport) -> None:
        with self.store.begin() as conn:
            booted = booted_at() if self.store.dialect == "sqlite" else None
            report.in_doubt.extend(ops.recover(conn, self.id, utcnow(), IDEMPOTENT, SETTLES_EACH, booted))

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
        size = min(self.settings.batch_size, MAX_BATCH)
        for send in due:
            with self.store.begin() as conn:
                if self._hold_if_overdue(conn, send, now, send.scheduled_at, report):
                    continue
                if ops.freeze(conn, send.id, size, now):
                    report.started.append(send.id)

    def _claim(self) -> Claimed | None:
        """Take one due batch, with its recipients, or None when there is none."""
        while True:
            with self.store.begin() as conn:
                got = ops.claim(conn, self.id, self.provider.name, utcnow(), self.store.dialect == "postgresql")
                if got is False:
                    continue  # another scheduler took it first
                if isinstance(got, Claimed) and got.batch.send_id not in self._issues:
                    row = conn.execute(sends.select().where(sends.c.id == got.batch.send_id)).one()
                    self._issues[row.id] = Issue(slug=row.issue_slug, subject=row.subject, html=row.html, text=row.text,
                                                 send_id=row.id, message_key=send_key(self.signer.token, row.id, row.created_at))
                return got  # type: ignore[return-value]

    def _recipients(self, claimed: Claimed, issue: Issue) -> list[Recipient]:
        # The one per-recipient step of a send: a signed link, then a substitution in the provider.
        link = unsubscribe_url(self.settings, "")
        token = self.signer.token
        return [Recipient(row.email, row.name or "", link + token(row.subscriber_id, issue.slug), row.subscriber_id, row.delivery_id)
                for row in claimed.rows]

    def _send(self, claimed: Claimed, report: RunReport) -> bool:
        """Send one claimed batch; False when the provider stopped before settling everyone."""
        batch = claimed.batch
        issue = self._issues[batch.send_id]
        report.skipped += claimed.skipped
        ledger = Ledger(self, claimed, report)
        recipients = self._recipients(claimed, issue)
        per_message = SETTLES_EACH.get(self.provider.name, False)
        where = f"send #{batch.send_id} batch {batch.number}"
        try:
            refused = self.provider.send(issue, recipients, ledger) if recipients else {}
        except OutcomeUnknown as exc:
            ledger.settle_rest(recipients, DeliveryStatus.IN_DOUBT, str(exc))
            report.in_doubt.append(f"{where}: {exc}")
        except DeliveryFailed as exc:
            ledger.settle_rest(recipients, DeliveryStatus.DEFERRED if exc.retryable else DeliveryStatus.FAILED, str(exc))
            report.errors.append(f"{where}: {exc}")
        except StoreLost:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug in one send must not stop the others
            self._hold_broken(claimed, recipients, ledger, per_message, exc, report)
            self._finish(claimed, report)
            return True  # that send is held; the others go on
        else:
            ledger.flush()
            unsettled = [r for r in recipients if r.delivery_id not in ledger.settled]
            for recipient in unsettled:
                if recipient.delivery_id in refused:
                    ledger.settle(recipient, DeliveryStatus.FAILED, refused[recipient.delivery_id or 0])
            if not per_message:  # a batch provider that returned took the whole request
                ledger.settle_rest(recipients, DeliveryStatus.SENT, "")
        ledger.flush()
        self._finish(claimed, report)
        return all(r.delivery_id in ledger.settled for r in recipients)

    def _hold_broken(self, claimed: Claimed, recipients: list[Recipient], ledger: Ledger, per_message: bool,
                     exc: Exception, report: RunReport) -> None:
        """An unexpected error: what may have gone out is in doubt, the send is held with the error."""
        ledger.flush()
        unsettled = [r for r in recipients if r.delivery_id not in ledger.settled]
        error = f"{type(exc).__name__}: {exc}"
        # An idempotent provider (the outbox) can simply try again: nothing is in doubt there.
        if ledger.at_once and per_message:
            ledger.settle_rest(unsettled[:1], DeliveryStatus.IN_DOUBT, f"an unexpected error while sending ({error})")
        elif ledger.at_once:
            ledger.settle_rest(unsettled, DeliveryStatus.IN_DOUBT, f"an unexpected error while sending ({error})")
        batch = claimed.batch
        note = (f"held after an unexpected error in batch {batch.number}: {error}; once it is fixed, "
                f"`newsletter resolve {batch.send_id} --send-late` goes on")[:500]
        with self.store.begin() as conn:
            send = conn.execute(sends.select().where(sends.c.id == batch.send_id)).one()
            if send.status == SendStatus.SENDING:
                ops.hold(conn, send, note)
        report.errors.append(f"send #{batch.send_id}: {note}")

    def _finish(self, claimed: Claimed, report: RunReport) -> None:
        try:
            with self.store.begin() as conn:
                if ops.finish(conn, self.id, claimed.batch, utcnow()):
                    report.batches += 1
        except SQLAlchemyError as exc:
            raise self._lost_store(exc) from None

    # -- running --------------------------------------------------------------
    def run_once(self) -> RunReport:
        """Send everything that is due, then return. Stops early, after the
        current batch, when `stop` is set, and at once when the lease is lost."""
        report = RunReport()
        try:
            self._register()
        except SQLAlchemyError as exc:
            raise self._lost_store(exc) from None
        try:
            self._recover(report)
            self._start(report)
            with self.store.engine.connect() as conn:
                self._total = ops.pending_count(conn, utcnow())
            while not self.stop.is_set() and self._lease_held():
                claimed = self._claim()
                if claimed is None:
                    break
                if not self._send(claimed, report):
                    break  # stopped early (its lease, or the provider): the rest is claimable again
            report.lease_lost = self._lost
        except SQLAlchemyError as exc:
            raise self._lost_store(exc) from None
        finally:
            self._close_recorder()
            self._unregister()
        touched = set(report.started) | set(self._issues)
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
