"""The scheduler's queries: leases, freezing a send, claiming a batch, recording
each delivery's outcome, and recovering what an expired lease left behind.

scheduler.py describes the protocol these serve; every function here is one
transaction's worth of work on a connection the caller opened.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, and_, delete, func, insert, literal, or_, select, update

from .schema import (
    UNSETTLED,
    BatchStatus,
    DeliveryStatus,
    SendStatus,
    SubscriberStatus,
    batches,
    deliveries,
    schedulers,
    sends,
    subscribers,
)
from .sends import finish_if_complete


@dataclass(frozen=True)
class Retry:
    """When a temporarily refused delivery is tried again: after `after`, doubling, for `window` in all."""

    after: dt.timedelta
    window: dt.timedelta


# -- leases ------------------------------------------------------------------
def register(conn: Connection, scheduler_id: str, host: str, pid: int, now: dt.datetime, lease: dt.timedelta) -> None:
    conn.execute(insert(schedulers).values(id=scheduler_id, host=host, pid=pid, started_at=now, heartbeat_at=now,
                                           lease_until=now + lease))


def renew(conn: Connection, scheduler_id: str, now: dt.datetime, lease: dt.timedelta) -> bool:
    """Extend the lease; False when it had already run out (or was taken), which is never undone."""
    return bool(conn.execute(update(schedulers).where(schedulers.c.id == scheduler_id, schedulers.c.lease_until > now)
                             .values(heartbeat_at=now, lease_until=now + lease)).rowcount)


def unregister(conn: Connection, scheduler_id: str) -> None:
    conn.execute(delete(schedulers).where(schedulers.c.id == scheduler_id))


def _tried_in_claim(batch: Row[Any]) -> Any:
    """The deliveries a claim handed to the provider and has not settled yet."""
    return and_(deliveries.c.send_id == batch.send_id, deliveries.c.batch_number == batch.number, or_(
        deliveries.c.status == DeliveryStatus.PENDING,
        and_(deliveries.c.status == DeliveryStatus.DEFERRED, deliveries.c.next_attempt_at <= batch.claimed_at)))


def recover(conn: Connection, scheduler_id: str, now: dt.datetime, idempotent: dict[str, bool],
            settles_each: dict[str, bool], booted_at: dt.datetime | None = None) -> list[str]:
    """Batches in flight under a lease that ran out: what may have gone out is in doubt, the rest claimable.
    Returns one line per batch recovered (no addresses).

    `booted_at`, on SQLite, is when this machine last started: a batch claimed
    before it may have lost its newest outcomes with the power (they are
    committed without an fsync), so every unsettled delivery of it is in doubt."""
    live = select(schedulers.c.id).where(schedulers.c.lease_until > now)
    stuck = conn.execute(select(batches).where(batches.c.status == BatchStatus.IN_FLIGHT, batches.c.claimed_by != scheduler_id,
                                               batches.c.claimed_by.not_in(live))).all()
    lines = []
    for batch in stuck:
        guard = and_(batches.c.id == batch.id, batches.c.status == BatchStatus.IN_FLIGHT, batches.c.claimed_by == batch.claimed_by)
        provider = batch.provider or ""
        error = f"the lease of scheduler {batch.claimed_by} ran out while this was with {provider}; it may have been delivered"
        doubtful: Sequence[int] = []
        if not idempotent.get(provider, False):
            tried = select(deliveries.c.id).where(_tried_in_claim(batch)).order_by(deliveries.c.id)
            # One by one, each settled before the next: only the first unsettled can have been on the wire.
            one_at_most = settles_each.get(provider, False) and not (booted_at and batch.claimed_at < booted_at)
            doubtful = conn.execute(tried.limit(1) if one_at_most else tried).scalars().all()
        if not conn.execute(update(batches).where(guard).values(status=BatchStatus.PENDING, claimed_by=None)).rowcount:
            continue
        if doubtful:
            conn.execute(update(deliveries).where(deliveries.c.id.in_(doubtful)).values(status=DeliveryStatus.IN_DOUBT, error=error))
            lines.append(f"send #{batch.send_id} batch {batch.number}: {len(doubtful)} delivery(ies) in doubt; {error}")
        close_batch(conn, batch.id, batch.send_id, batch.number, now)
    conn.execute(delete(schedulers).where(schedulers.c.lease_until <= now))
    return lines


# -- freezing and claiming ---------------------------------------------------
def due_sends(conn: Connection, now: dt.datetime) -> Sequence[Row[Any]]:
    return conn.execute(select(sends).where(sends.c.status == SendStatus.QUEUED, sends.c.scheduled_at <= now)).all()


def stalled_sends(conn: Connection) -> Sequence[Row[Any]]:
    """Sends under way with a batch waiting to be claimed now (not merely waiting for a retry)."""
    waiting = select(batches.c.send_id).where(batches.c.status == BatchStatus.PENDING, batches.c.not_before.is_(None))
    return conn.execute(select(sends).where(sends.c.status == SendStatus.SENDING, sends.c.id.in_(waiting))).all()


def hold(conn: Connection, send: Row[Any], note: str) -> bool:
    return bool(conn.execute(update(sends).where(sends.c.id == send.id, sends.c.status == send.status)
                             .values(status=SendStatus.HELD, note=note)).rowcount)


def freeze(conn: Connection, send_id: int, batch_size: int, now: dt.datetime) -> bool:
    """queued → sending, with one delivery per active subscriber in numbered batches; False if another won."""
    won = conn.execute(update(sends).where(sends.c.id == send_id, sends.c.status == SendStatus.QUEUED)
                       .values(status=SendStatus.SENDING, started_at=now, last_progress_at=now)).rowcount
    if not won:
        return False
    position = func.row_number().over(order_by=subscribers.c.id) - 1
    conn.execute(insert(deliveries).from_select(
        ["send_id", "batch_number", "subscriber_id", "status", "attempts"],
        select(literal(send_id), position // batch_size, subscribers.c.id, literal(DeliveryStatus.PENDING.value), literal(0))
        .where(subscribers.c.status == SubscriberStatus.ACTIVE),
    ))
    conn.execute(insert(batches).from_select(
        ["send_id", "number", "status"],
        select(literal(send_id), deliveries.c.batch_number, literal(BatchStatus.PENDING.value))
        .where(deliveries.c.send_id == send_id).distinct(),
    ))
    finish_if_complete(conn, send_id)  # at once, when there is nobody to send to
    return True


def finish_settled_sends(conn: Connection) -> list[int]:
    """Sends whose every batch is done (after a migration or an editor's decision) are sent."""
    ids = conn.execute(select(sends.c.id).where(sends.c.status == SendStatus.SENDING)).scalars().all()
    return [i for i in ids if finish_if_complete(conn, i)]


@dataclass(frozen=True)
class Claimed:
    batch: Row[Any]
    rows: Sequence[Any]  # named rows: delivery_id, subscriber_id, email, name, attempts, deferred_since, of the active recipients
    skipped: int  # unsubscribed (or bounced…) since the freeze: recorded as skipped in the claim


def claim(conn: Connection, scheduler_id: str, provider: str, now: dt.datetime, skip_locked: bool) -> Claimed | bool | None:
    """Take one due batch of a sending send: the Claimed, None when none is due, False when another took it first."""
    query = (select(batches.c.id).join(sends, sends.c.id == batches.c.send_id)
             .where(batches.c.status == BatchStatus.PENDING, sends.c.status == SendStatus.SENDING,
                    or_(batches.c.not_before.is_(None), batches.c.not_before <= now))
             .order_by(batches.c.send_id, batches.c.number).limit(1))
    if skip_locked:
        query = query.with_for_update(skip_locked=True, of=batches)
    batch_id = conn.execute(query).scalar()
    if batch_id is None:
        return None
    won = conn.execute(update(batches).where(batches.c.id == batch_id, batches.c.status == BatchStatus.PENDING).values(
        status=BatchStatus.IN_FLIGHT, claimed_by=scheduler_id, claimed_at=now, provider=provider)).rowcount
    if not won:
        return False
    batch = conn.execute(select(batches).where(batches.c.id == batch_id)).one()
    due = _tried_in_claim(batch)
    # Statuses are read here, just before sending: an unsubscribe since the freeze still counts.
    gone = select(subscribers.c.id).where(subscribers.c.status != SubscriberStatus.ACTIVE)
    skipped = conn.execute(update(deliveries).where(due, deliveries.c.subscriber_id.in_(gone))
                           .values(status=DeliveryStatus.SKIPPED)).rowcount
    rows: Sequence[Any] = conn.execute(
        select(deliveries.c.id.label("delivery_id"), deliveries.c.subscriber_id, subscribers.c.email, subscribers.c.name,
               deliveries.c.attempts, deliveries.c.deferred_since)
        .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
        .where(due).order_by(deliveries.c.id)
    ).all()
    return Claimed(batch, rows, int(skipped))


# -- outcomes ----------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    status: DeliveryStatus
    reason: str
    attempts: int  # temporary refusals before this one
    deferred_since: dt.datetime | None


def settle(conn: Connection, outcomes: Iterable[Outcome], now: dt.datetime, retry: Retry) -> list[DeliveryStatus]:
    """Record outcomes; a deferral past the retry window is a failure. Returns the statuses recorded.

    Only a delivery not yet settled (or in doubt: the truth is better) is written,
    so a scheduler whose lease ran out can still record what the server told it."""
    recorded = []
    for outcome in outcomes:
        values: dict[str, Any] = {"status": outcome.status, "error": outcome.reason or None}
        status = outcome.status
        if status == DeliveryStatus.SENT:
            values.update(sent_at=now, error=None)
        elif status == DeliveryStatus.DEFERRED:
            since = outcome.deferred_since or now
            tries = outcome.attempts + 1
            if now - since >= retry.window:
                hours = retry.window.total_seconds() / 3600
                status = DeliveryStatus.FAILED
                values.update(status=status, error=f"still refused after {tries} tries over {hours:g} hours: {outcome.reason}",
                              next_attempt_at=None)
            else:
                wait = retry.after * 2 ** outcome.attempts
                values.update(attempts=tries, deferred_since=since, next_attempt_at=min(now + wait, since + retry.window))
        open_ = deliveries.c.status.in_((*UNSETTLED, DeliveryStatus.IN_DOUBT))
        conn.execute(update(deliveries).where(deliveries.c.id == outcome.delivery_id, open_).values(**values))
        recorded.append(status)
    return recorded


def close_batch(conn: Connection, batch_id: int, send_id: int, number: int, now: dt.datetime) -> None:
    """A batch whose claim ended: done when all its deliveries are settled, else claimable
    (at once for what was never tried, at the first retry time for what was deferred)."""
    mine = and_(deliveries.c.send_id == send_id, deliveries.c.batch_number == number)
    untried = conn.execute(select(func.count()).where(mine, deliveries.c.status == DeliveryStatus.PENDING)).scalar()
    deferred = and_(mine, deliveries.c.status == DeliveryStatus.DEFERRED)
    retry_at = conn.execute(select(func.min(deliveries.c.next_attempt_at)).where(deferred)).scalar()
    if untried:
        values: dict[str, Any] = {"status": BatchStatus.PENDING, "claimed_by": None, "not_before": None}
    elif retry_at is not None:
        values = {"status": BatchStatus.PENDING, "claimed_by": None, "not_before": retry_at}
    else:
        values = {"status": BatchStatus.DONE, "finished_at": now, "not_before": None}
    conn.execute(update(batches).where(batches.c.id == batch_id).values(**values))
    conn.execute(update(sends).where(sends.c.id == send_id).values(last_progress_at=now))
    finish_if_complete(conn, send_id)


def finish(conn: Connection, scheduler_id: str, batch: Row[Any], now: dt.datetime) -> bool:
    """End this scheduler's claim on the batch; False (and nothing changed) if the claim is no longer its own."""
    mine = conn.execute(select(batches.c.id).where(batches.c.id == batch.id, batches.c.claimed_by == scheduler_id,
                                                   batches.c.status == BatchStatus.IN_FLIGHT)).scalar()
    if mine is None:
        return False
    close_batch(conn, batch.id, batch.send_id, batch.number, now)
    return True


def pending_count(conn: Connection, now: dt.datetime) -> int:
    """Deliveries due to be tried now, in sends under way: the size of a run."""
    due = or_(deliveries.c.status == DeliveryStatus.PENDING,
              and_(deliveries.c.status == DeliveryStatus.DEFERRED, deliveries.c.next_attempt_at <= now))
    return int(conn.execute(select(func.count()).select_from(deliveries.join(sends, sends.c.id == deliveries.c.send_id))
                            .where(due, sends.c.status == SendStatus.SENDING)).scalar() or 0)


def next_retry(conn: Connection) -> dt.datetime | None:
    """When the earliest deferred delivery of a send under way is due."""
    return conn.execute(select(func.min(batches.c.not_before)).join(sends, sends.c.id == batches.c.send_id).where(
        batches.c.status == BatchStatus.PENDING, sends.c.status == SendStatus.SENDING)).scalar()


def sends_with(conn: Connection, ids: Iterable[int], status: SendStatus) -> list[int]:
    return sorted(conn.execute(select(sends.c.id).where(sends.c.status == status, sends.c.id.in_(list(ids)))).scalars())
