"""The scheduler: sends due issues to the list, each recipient exactly once.

Where the exactly-once guarantee lives
--------------------------------------
1. Freeze (`_start`). When a send starts, one transaction moves it from
   queued to sending (a compare-and-set, so only one scheduler wins) and
   writes one delivery per active subscriber, grouped into numbered batches.
   The list is fixed from then on; an unsubscribe before a batch goes is
   still honoured when that batch is sent.
2. Claim (`_claim`). A batch moves pending → in_flight in its own committed
   transaction before the provider is called: `FOR UPDATE SKIP LOCKED` on
   PostgreSQL, the write lock of `BEGIN IMMEDIATE` on SQLite, and in both a
   compare-and-set on the status, so no two schedulers can hold one batch.
3. Finish (`_finish`). Only after the provider answered is the batch marked
   done and its deliveries sent.
4. Recover (`_recover`). A batch still in flight whose scheduler is gone (its
   process is dead, or its heartbeat stale) may or may not have reached the
   provider. It becomes in_doubt and is never sent again without the editor
   (`newsletter resolve SEND --resend | --mark-sent`), except with a provider
   that is idempotent by construction (the outbox), where it simply goes back
   to pending.
A send is marked sent only when every one of its batches is done.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Row, delete, func, insert, literal, select, update

from .config import Settings
from .messages import Issue, Recipient, send_key
from .providers import IDEMPOTENT, DeliveryFailed, OutcomeUnknown, Provider
from .sends import finish_if_complete
from .store import Store
from .store.schema import batches, deliveries, schedulers, sends, subscribers, utcnow
from .tokens import Signer, unsubscribe_url

HEARTBEAT_SECONDS = 10.0
STALE_AFTER = dt.timedelta(seconds=90)  # a scheduler silent this long is taken for dead
MAX_BATCH = 1000  # SendGrid's limit per request; no provider gets more at once


@dataclass
class RunReport:
    sent: int = 0
    skipped: int = 0  # unsubscribed (or bounced…) after the send was frozen
    failed: int = 0  # refused by the provider, one by one
    batches: int = 0
    started: list[int] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    in_doubt: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    completed: list[int] = field(default_factory=list)  # sends that are now fully sent


@dataclass
class Claim:
    """A batch this scheduler holds in flight, and what it needs to send it."""

    batch: Row[Any]
    issue: Issue
    rows: Sequence[Any]  # rows of (delivery id, subscriber id, email, name, status) of its pending deliveries


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        self._issues: dict[int, Issue] = {}
        self._beat: threading.Thread | None = None

    # -- liveness ---------------------------------------------------------
    def _register(self) -> None:
        now = utcnow()
        with self.store.begin() as conn:
            conn.execute(insert(schedulers).values(id=self.id, host=self.host, pid=os.getpid(), started_at=now, heartbeat_at=now))
        done = threading.Event()
        self._beat_done = done

        def beat() -> None:
            while not done.wait(HEARTBEAT_SECONDS):
                try:
                    with self.store.begin() as conn:
                        conn.execute(update(schedulers).where(schedulers.c.id == self.id).values(heartbeat_at=utcnow()))
                except Exception:  # noqa: BLE001 - a missed beat only makes others wary sooner
                    pass

        self._beat = threading.Thread(target=beat, name="scheduler-heartbeat", daemon=True)
        self._beat.start()

    def _unregister(self) -> None:
        self._beat_done.set()
        if self._beat:
            self._beat.join()
        with self.store.begin() as conn:
            conn.execute(delete(schedulers).where(schedulers.c.id == self.id))

    def _is_alive(self, row: Row[Any] | None, now: dt.datetime) -> bool:
        if row is None:
            return False
        if row.host == self.host and not _pid_alive(row.pid):
            return False
        return row.heartbeat_at > now - STALE_AFTER

    # -- the four steps ---------------------------------------------------
    def _recover(self, report: RunReport) -> None:
        """In-flight batches whose scheduler is gone: in doubt, or pending again where that is safe."""
        now = utcnow()
        with self.store.begin() as conn:
            live = {row.id: row for row in conn.execute(select(schedulers))}
            stuck = conn.execute(select(batches).where(batches.c.status == "in_flight")).all()
            for batch in stuck:
                if batch.claimed_by == self.id or self._is_alive(live.get(batch.claimed_by), now):
                    continue
                safe = IDEMPOTENT.get(batch.provider or "", False)
                guard = (batches.c.id == batch.id) & (batches.c.status == "in_flight") & (batches.c.claimed_by == batch.claimed_by)
                if safe:
                    conn.execute(update(batches).where(guard).values(status="pending", claimed_by=None))
                else:
                    error = (f"the scheduler {batch.claimed_by} stopped while this batch was with {batch.provider}; "
                             "some or all of it may have been delivered")
                    conn.execute(update(batches).where(guard).values(status="in_doubt", error=error))
            for sid, row in live.items():
                if sid != self.id and not self._is_alive(row, now):
                    conn.execute(delete(schedulers).where(schedulers.c.id == sid))
            for batch in conn.execute(select(batches.c.send_id, batches.c.number, batches.c.error)
                                      .where(batches.c.status == "in_doubt")):
                report.in_doubt.append(f"send #{batch.send_id} batch {batch.number}: {batch.error}")

    def _hold_if_overdue(self, conn: Connection, send: Row[Any], now: dt.datetime, since: dt.datetime,
                         report: RunReport) -> bool:
        grace = dt.timedelta(hours=self.settings.grace_hours)
        if send.late_ok or now - since <= grace:
            return False
        hours = (now - since).total_seconds() / 3600
        note = (f"held: found {hours:.1f} hours late (grace {self.settings.grace_hours:g} h); "
                f"send anyway with `newsletter resolve {send.id} --send-late`, or cancel it")
        result = conn.execute(update(sends).where(sends.c.id == send.id, sends.c.status == send.status)
                              .values(status="held", note=note))
        if result.rowcount:
            report.held.append(f"send #{send.id} ({send.issue_slug}): {note}")
        return True

    def _start(self, report: RunReport) -> None:
        """Freeze every due queued send into deliveries and batches; hold the overdue ones."""
        now = utcnow()
        with self.store.begin() as conn:
            due = conn.execute(select(sends).where(sends.c.status == "queued", sends.c.scheduled_at <= now)).all()
            stalled = conn.execute(select(sends).where(sends.c.status == "sending")).all()
            for send in stalled:
                pending = conn.execute(select(func.count()).where(batches.c.send_id == send.id, batches.c.status == "pending")).scalar()
                if pending and send.last_progress_at:
                    self._hold_if_overdue(conn, send, now, send.last_progress_at, report)
        for send in due:
            with self.store.begin() as conn:
                if self._hold_if_overdue(conn, send, now, send.scheduled_at, report):
                    continue
                won = conn.execute(update(sends).where(sends.c.id == send.id, sends.c.status == "queued")
                                   .values(status="sending", started_at=now, last_progress_at=now)).rowcount
                if not won:
                    continue  # another scheduler froze it first
                size = min(self.settings.batch_size, MAX_BATCH)
                position = func.row_number().over(order_by=subscribers.c.id) - 1
                conn.execute(insert(deliveries).from_select(
                    ["send_id", "batch_number", "subscriber_id", "status"],
                    select(literal(send.id), position // size, subscribers.c.id, literal("pending"))
                    .where(subscribers.c.status == "active"),
                ))
                conn.execute(insert(batches).from_select(
                    ["send_id", "number", "status"],
                    select(literal(send.id), deliveries.c.batch_number, literal("pending"))
                    .where(deliveries.c.send_id == send.id).distinct(),
                ))
                finish_if_complete(conn, send.id)  # at once, when there is nobody to send to
                report.started.append(send.id)

    def _claim(self) -> Claim | None:
        """Take one pending batch of a sending send, with its recipients, or None when there is none."""
        while True:
            with self.store.begin() as conn:
                query = (select(batches.c.id).join(sends, sends.c.id == batches.c.send_id)
                         .where(batches.c.status == "pending", sends.c.status == "sending")
                         .order_by(batches.c.send_id, batches.c.number).limit(1))
                if self.store.dialect == "postgresql":
                    query = query.with_for_update(skip_locked=True, of=batches)
                batch_id = conn.execute(query).scalar()
                if batch_id is None:
                    return None
                won = conn.execute(update(batches).where(batches.c.id == batch_id, batches.c.status == "pending").values(
                    status="in_flight", claimed_by=self.id, claimed_at=utcnow(), provider=self.provider.name)).rowcount
                if won:
                    batch = conn.execute(select(batches).where(batches.c.id == batch_id)).one()
                    # Statuses are read here, just before sending: an unsubscribe since the freeze still counts.
                    rows = conn.execute(
                        select(deliveries.c.id, deliveries.c.subscriber_id, subscribers.c.email, subscribers.c.name,
                               subscribers.c.status)
                        .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
                        .where(deliveries.c.send_id == batch.send_id, deliveries.c.batch_number == batch.number,
                               deliveries.c.status == "pending")
                        .order_by(deliveries.c.id)
                    ).all()
                    return Claim(batch, self._issue(conn, batch.send_id), rows)

    def _issue(self, conn: Connection, send_id: int) -> Issue:
        if send_id not in self._issues:
            row = conn.execute(select(sends).where(sends.c.id == send_id)).one()
            self._issues[send_id] = Issue(slug=row.issue_slug, subject=row.subject, html=row.html, text=row.text, send_id=row.id,
                                          message_key=send_key(self.signer.token, row.id, row.created_at))
        return self._issues[send_id]

    def _send(self, claim: Claim, report: RunReport) -> None:
        batch, issue = claim.batch, claim.issue
        # The one per-recipient step of a send: a signed link, then a substitution in the provider.
        link = unsubscribe_url(self.settings, "")
        token = self.signer.token
        skipped: list[int] = []
        recipients: list[Recipient] = []
        for delivery_id, subscriber_id, email, name, status in claim.rows:
            if status != "active":
                skipped.append(delivery_id)  # unsubscribed (or bounced…) since the send was frozen
                continue
            recipients.append(Recipient(email, name, link + token(subscriber_id, issue.slug), subscriber_id, delivery_id))
        try:
            refused = self.provider.send(issue, recipients) if recipients else {}
        except OutcomeUnknown as exc:
            self._set_batch(batch, "in_doubt", str(exc), skipped)
            report.in_doubt.append(f"send #{batch.send_id} batch {batch.number}: {exc}")
            return
        except DeliveryFailed as exc:
            self._set_batch(batch, "failed", str(exc), skipped)
            report.errors.append(f"send #{batch.send_id} batch {batch.number}: {exc}")
            return
        self._finish(batch, skipped, refused)
        report.batches += 1
        report.sent += len(recipients) - len(refused)
        report.skipped += len(skipped)
        report.failed += len(refused)

    def _set_batch(self, batch: Row[Any], status: str, error: str, skipped: list[int]) -> None:
        with self.store.begin() as conn:
            if skipped:
                conn.execute(update(deliveries).where(deliveries.c.id.in_(skipped)).values(status="skipped"))
            conn.execute(update(batches).where(batches.c.id == batch.id, batches.c.claimed_by == self.id)
                         .values(status=status, error=error, finished_at=utcnow()))

    def _finish(self, batch: Row[Any], skipped: list[int], refused: dict[int, str]) -> None:
        now = utcnow()
        with self.store.begin() as conn:
            if skipped:
                conn.execute(update(deliveries).where(deliveries.c.id.in_(skipped)).values(status="skipped"))
            for delivery_id, reason in refused.items():
                conn.execute(update(deliveries).where(deliveries.c.id == delivery_id).values(status="failed", error=reason))
            conn.execute(update(deliveries).where(
                deliveries.c.send_id == batch.send_id, deliveries.c.batch_number == batch.number,
                deliveries.c.status == "pending",
            ).values(status="sent", sent_at=now))
            # In doubt too: another scheduler may have taken this one for dead, yet it finished.
            conn.execute(update(batches).where(
                batches.c.id == batch.id, batches.c.claimed_by == self.id,
                batches.c.status.in_(("in_flight", "in_doubt")),
            ).values(status="done", finished_at=now, error=None))
            conn.execute(update(sends).where(sends.c.id == batch.send_id).values(last_progress_at=now))
            finish_if_complete(conn, batch.send_id)

    def _pending_recipients(self) -> int:
        with self.store.engine.connect() as conn:
            return int(conn.execute(
                select(func.count()).select_from(deliveries.join(sends, sends.c.id == deliveries.c.send_id))
                .where(deliveries.c.status == "pending", sends.c.status == "sending")
            ).scalar() or 0)

    # -- running ----------------------------------------------------------
    def run_once(self) -> RunReport:
        """Send everything that is due, then return. Stops early, after the
        current batch, when `stop` is set."""
        report = RunReport()
        self._register()
        try:
            self._recover(report)
            self._start(report)
            total = self._pending_recipients()
            done = 0
            while not self.stop.is_set():
                claim = self._claim()
                if claim is None:
                    break
                before = report.sent + report.skipped + report.failed
                self._send(claim, report)
                done += report.sent + report.skipped + report.failed - before
                if self.progress:
                    self.progress(done, total)
        finally:
            self._unregister()
        touched = set(report.started) | set(self._issues)
        if touched:
            with self.store.engine.connect() as conn:
                report.completed = sorted(conn.execute(
                    select(sends.c.id).where(sends.c.status == "sent", sends.c.id.in_(touched))).scalars())
        return report

    def run_forever(self, poll_seconds: float = 30.0, on_report: Callable[[RunReport], None] | None = None) -> None:
        while not self.stop.is_set():
            report = self.run_once()
            if on_report:
                on_report(report)
            self.stop.wait(poll_seconds)
