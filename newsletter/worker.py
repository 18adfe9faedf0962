"""One of a scheduler's workers: claims a batch, hands it to the provider, records
each outcome, finishes the batch; then the next. scheduler.py says what this
guarantees and how; this module is steps 3 to 5 of it.

A worker runs on its own thread with its own database connection, so that a
scheduler keeps `concurrency` SMTP connections or SendGrid requests going at
once. Threads, not asyncio: smtplib, the sendgrid client and the database
drivers all block, and each worker spends its time waiting on them (the GIL is
released meanwhile).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from .errors import NewsletterError
from .messages import Issue, Recipient
from .providers import IDEMPOTENT, SETTLES_EACH, BeforeTheWire, DeliveryFailed, OutcomeUnknown
from .store import deliveries as ops
from .store.db import describe_failure, for_writing
from .store.deliveries import Claimed, Outcome
from .store.schema import DeliveryStatus, SendStatus, sends, utcnow
from .tokens import unsubscribe_url

if TYPE_CHECKING:
    from .scheduler import RunReport, Scheduler


T = TypeVar("T")
TRANSIENT = {"40P01", "40001"}  # PostgreSQL broke a deadlock, or a serialisation conflict: try again
TRANSIENT_TRIES = 5


class StoreLost(NewsletterError):
    """The database went away mid-send; what was recorded stands, the rest is resolved on restart."""


class LeaseRanOut(StoreLost):
    """A database error after this scheduler's lease ran out (it was paused): it stops, as when
    it finds its lease gone, and another scheduler takes over its work."""


def lost_store(exc: Exception) -> StoreLost:
    return StoreLost(f"lost the database while sending ({describe_failure(exc)}); what was recorded stands: "
                     "run the scheduler again when it is back, and check `newsletter sends` for anything in doubt")


def _storable(reason: str) -> str:
    """A server's answer as the store keeps it: printable, one line (PostgreSQL refuses a NUL in text)."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in reason).split())


class Ledger:
    """The Outcomes a provider reports to (see providers/__init__.py), for one claimed batch."""

    def __init__(self, worker: Worker, claimed: Claimed):
        self.worker = worker
        self.claimed = claimed
        self.rows = {row.delivery_id: row for row in claimed.rows}
        self.settled: set[int] = set()
        provider = claimed.batch.provider or ""
        # Idempotent providers can repeat a delivery harmlessly: their outcomes are recorded with the batch.
        self.at_once = not IDEMPOTENT.get(provider, False)
        self.buffer: list[Outcome] = []
        self.stopped = False  # may_send said no: what is unsettled was never handed over

    def settle(self, recipient: Recipient, status: DeliveryStatus, reason: str = "") -> None:
        delivery_id = recipient.delivery_id
        if delivery_id is None or delivery_id in self.settled:
            return
        self.settled.add(delivery_id)
        row = self.rows[delivery_id]
        self.buffer.append(Outcome(delivery_id, status, _storable(reason), row.attempts, row.deferred_since))
        if self.at_once:
            self.flush()

    def settle_rest(self, recipients: list[Recipient], status: DeliveryStatus, reason: str) -> None:
        for recipient in recipients:
            if recipient.delivery_id not in self.settled:
                self.settled.add(recipient.delivery_id or 0)
                row = self.rows[recipient.delivery_id or 0]
                self.buffer.append(Outcome(row.delivery_id, status, _storable(reason), row.attempts, row.deferred_since))
        # Not flushed: nothing more of this batch goes on the wire, and finishing records them with the batch.

    def flush(self) -> None:
        if self.buffer:
            self.worker.scheduler.counted(self.worker.record(self.take()))

    def take(self) -> list[Outcome]:
        """The outcomes not yet recorded, now the caller's to record."""
        outcomes, self.buffer = self.buffer, []
        return outcomes

    def may_send(self, count: int = 1) -> bool:
        """True when the next `count` messages may go now: the lease holds, and the pace, waited for, allows them."""
        scheduler = self.worker.scheduler
        if scheduler.lease_held() and scheduler.pace.wait(count, stop=scheduler.stop) and scheduler.lease_held():
            return True
        self.stopped = True
        return False

    def slow_down(self, pause: float = 0.0) -> None:
        self.worker.scheduler.pace.slow_down(pause)


class Worker:
    def __init__(self, scheduler: Scheduler):
        self.scheduler = scheduler
        self.store = scheduler.store
        self.provider = scheduler.provider
        self.report: RunReport = scheduler.report
        self._conn: Connection | None = None
        self._level = ""

    # -- its connection --------------------------------------------------------
    def write(self, work: Callable[[Connection], T], durable: bool = True) -> T:
        """`work(conn)` in one write transaction on this worker's own connection, kept
        open for the run; tried again when PostgreSQL broke a deadlock or a
        serialisation conflict (every piece of work here is a compare-and-set,
        safe to repeat). StoreLost for anything else the database says.

        On SQLite work that is not `durable` commits without an fsync
        (synchronous=NORMAL in WAL mode): durable against a crash or kill -9 of
        this process, not against a power cut, after which `recover` holds the
        whole unsettled rest of a claimed batch in doubt. Only outcomes and
        finishing a batch are written so; a claim is always synced, so a power
        cut never loses the claim of a batch whose messages went out."""
        for attempt in range(TRANSIENT_TRIES):
            try:
                if self._conn is None:
                    self._conn = for_writing(self.store.engine.connect())
                self._synchronous("NORMAL" if not durable else "FULL")
                with self._conn.begin():
                    return work(self._conn)
            except SQLAlchemyError as exc:
                transient = isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) in TRANSIENT
                if transient and attempt + 1 < TRANSIENT_TRIES:
                    time.sleep(random.uniform(0, 0.02 * 2**attempt))
                    continue
                if self.scheduler.lease_ran_out():
                    raise LeaseRanOut(describe_failure(exc)) from None
                raise lost_store(exc) from None
        raise AssertionError("unreachable")

    def _synchronous(self, level: str) -> None:
        # Outside any transaction, on the driver's own connection: SQLite refuses it inside one.
        if self.store.dialect == "sqlite" and level != self._level and self._conn is not None:
            self._conn.connection.driver_connection.execute(f"PRAGMA synchronous={level}")  # type: ignore[union-attr]  # a live pooled connection always has its driver's
            self._level = level

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            self._synchronous("FULL")  # before it goes back to the pool
            conn.close()
        except (SQLAlchemyError, OSError, ValueError):
            conn.invalidate()

    # -- the loop ----------------------------------------------------------------
    def run(self) -> None:
        """Claim and send batches until none is due, the scheduler halts, or the lease is lost."""
        scheduler = self.scheduler
        try:
            while not scheduler.stop.is_set() and scheduler.lease_held():
                claimed = self.claim()
                if claimed is None:
                    break
                if not self.send(claimed):
                    break  # stopped early (its lease, or the provider): the rest is claimable again
        except LeaseRanOut:
            pass  # what it could not record, the scheduler that took over holds in doubt
        finally:
            self.close()

    def record(self, outcomes: list[Outcome]) -> list[DeliveryStatus]:
        """Outcomes committed before the provider puts the next message on the wire."""
        return self.write(lambda conn: ops.settle(conn, outcomes, utcnow(), self.scheduler.retry), durable=False)

    def claim(self) -> Claimed | None:
        """Take one due batch, with its recipients, or None when there is none."""
        scheduler = self.scheduler

        def take(conn: Connection) -> Claimed | bool | None:
            got = ops.claim(conn, scheduler.id, self.provider.name, utcnow(), self.store.dialect == "postgresql")
            if isinstance(got, Claimed):
                scheduler.load_issue(conn, got.batch.send_id)
            return got

        while True:
            got = self.write(take)
            if got is not False:  # False: another worker or scheduler took it first
                return got if isinstance(got, Claimed) else None

    def _recipients(self, claimed: Claimed, issue: Issue) -> list[Recipient]:
        # The one per-recipient step of a send: a signed link, then a substitution in the provider.
        settings = self.scheduler.settings
        link = unsubscribe_url(settings, "")
        token = self.scheduler.signer.token
        return [Recipient(row.email, row.name or "", link + token(row.subscriber_id, issue.slug), row.subscriber_id, row.delivery_id)
                for row in claimed.rows]

    def send(self, claimed: Claimed) -> bool:
        """Send one claimed batch; False when the provider stopped before settling everyone."""
        batch = claimed.batch
        report = self.report
        issue = self.scheduler.issues[batch.send_id]
        report.add("skipped", claimed.skipped)
        ledger = Ledger(self, claimed)
        recipients = self._recipients(claimed, issue)
        per_message = SETTLES_EACH.get(self.provider.name, False)
        where = f"send #{batch.send_id} batch {batch.number}"
        try:
            refused = self.provider.send(issue, recipients, ledger) if recipients else {}
        except OutcomeUnknown as exc:
            ledger.settle_rest(recipients, DeliveryStatus.IN_DOUBT, str(exc))
            report.note("in_doubt", f"{where}: {exc}")
        except DeliveryFailed as exc:
            if exc.retryable:
                ledger.settle_rest(recipients, DeliveryStatus.DEFERRED, str(exc))
                report.note("errors", f"{where}: {exc}")
            else:  # the set-up is wrong (a refused login, an outbox that cannot be written): nobody got it, nobody failed
                self._hold(claimed, f"{exc}; nothing was sent. Once it is fixed, "
                                    f"`newsletter resolve {batch.send_id} --send-late` goes on", kind="held")
        except StoreLost:
            raise
        except Exception as exc:  # noqa: BLE001
            self._hold_broken(claimed, recipients, ledger, per_message, exc)  # a bug in one send must not stop the others
            self.finish(claimed, ledger.take())
            return True
        else:
            unsettled = [r for r in recipients if r.delivery_id not in ledger.settled]
            for recipient in unsettled:
                if recipient.delivery_id in refused:
                    ledger.settle(recipient, DeliveryStatus.FAILED, refused[recipient.delivery_id or 0])
            if not per_message and not ledger.stopped:  # a batch provider that returned took the whole request
                ledger.settle_rest(recipients, DeliveryStatus.SENT, "")
        self.finish(claimed, ledger.take())
        return all(r.delivery_id in ledger.settled for r in recipients)

    def _hold_broken(self, claimed: Claimed, recipients: list[Recipient], ledger: Ledger, per_message: bool,
                     exc: Exception) -> None:
        """An unexpected error: what may have gone out is in doubt, the send is held with the error."""
        ledger.flush()
        unsettled = [r for r in recipients if r.delivery_id not in ledger.settled]
        error = str(exc) if isinstance(exc, BeforeTheWire) else f"{type(exc).__name__}: {exc}"
        # In doubt: the message on the wire (or the whole request). Nothing with an idempotent provider
        # (the outbox simply tries again), nor when the provider says the error came before the message began.
        doubtful = [] if isinstance(exc, BeforeTheWire) or not ledger.at_once else unsettled[:1] if per_message else unsettled
        if doubtful:
            ledger.settle_rest(doubtful, DeliveryStatus.IN_DOUBT, f"an unexpected error while sending ({error})")
        ledger.flush()  # before the send is held: what is in doubt is on record first
        batch = claimed.batch
        self._hold(claimed, f"held after an unexpected error in batch {batch.number}: {error}; once it is fixed, "
                            f"`newsletter resolve {batch.send_id} --send-late` goes on")

    def _hold(self, claimed: Claimed, note: str, kind: str = "errors") -> None:
        """Hold the claimed batch's send with this note for the editor (reported as `kind`)."""
        batch = claimed.batch
        note = note[:500]

        def hold(conn: Connection) -> None:
            send = conn.execute(sends.select().where(sends.c.id == batch.send_id)).one()
            if send.status == SendStatus.SENDING:
                ops.hold(conn, send, note)

        self.write(hold)
        self.report.note(kind, f"send #{batch.send_id}: {note}")

    def finish(self, claimed: Claimed, outcomes: list[Outcome]) -> None:
        """Record the batch's last outcomes and end its claim, in one transaction."""
        scheduler = self.scheduler

        def work(conn: Connection) -> tuple[list[DeliveryStatus], bool]:
            now = utcnow()
            statuses = ops.settle(conn, outcomes, now, scheduler.retry) if outcomes else []
            return statuses, ops.finish(conn, scheduler.id, claimed.batch, now)

        statuses, finished = self.write(work, durable=False)
        scheduler.counted(statuses)
        if finished:
            self.report.add("batches", 1)
