"""The scheduler's queries: leases, freezing a send, claiming a batch, recording
each delivery's outcome, and recovering what an expired lease left behind.

scheduler.py describes the protocol these serve; every function here is one
transaction's worth of work on a connection the caller opened.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ARRAY,
    Connection,
    DateTime,
    Integer,
    Row,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)

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


# The statements run once a batch (a thousand times a million readers) are built once, on bind parameters.
NOW = bindparam("now", type_=DateTime)
IN_BATCH = and_(deliveries.c.id.between(bindparam("first", type_=Integer), bindparam("last", type_=Integer)),
                deliveries.c.send_id + 0 == bindparam("send_id", type_=Integer),
                deliveries.c.batch_number == bindparam("number", type_=Integer))
"""A batch's deliveries, read through the primary key (see schema.batches). The send and number are
checked, never used as a way in (`+ 0`): right after a freeze the planner knows nothing of the new
rows, and would otherwise walk the whole send through the unique index to find one batch."""
TRIED_IN_CLAIM = and_(IN_BATCH, or_(
    deliveries.c.status == DeliveryStatus.PENDING,
    and_(deliveries.c.status == DeliveryStatus.DEFERRED, deliveries.c.next_attempt_at <= bindparam("claimed_at", type_=DateTime))))
"""The deliveries a claim handed to the provider and has not settled yet."""


def _batch(batch: Any) -> dict[str, Any]:
    """The values of IN_BATCH and TRIED_IN_CLAIM for this batch."""
    return {"first": batch.first_delivery, "last": batch.last_delivery, "send_id": batch.send_id, "number": batch.number,
            "claimed_at": batch.claimed_at}


def stuck(conn: Connection, scheduler_id: str, now: dt.datetime) -> Sequence[Row[Any]]:
    """Batches in flight under a lease that ran out (another scheduler's, never ours)."""
    live = select(schedulers.c.id).where(schedulers.c.lease_until > now)
    return conn.execute(select(batches).where(batches.c.status == BatchStatus.IN_FLIGHT, batches.c.claimed_by != scheduler_id,
                                              batches.c.claimed_by.not_in(live)).order_by(batches.c.id)).all()


def recover(conn: Connection, batch: Row[Any], now: dt.datetime, idempotent: dict[str, bool],
            settles_each: dict[str, bool], booted_at: dt.datetime | None = None) -> str | None:
    """One stuck batch: what may have gone out is in doubt, the rest claimable. Returns a
    line for the editor when something is in doubt (no addresses). One transaction per
    batch, taking the batch's row before the send's, as finishing a batch does: a
    scheduler still finishing its batches (it woke after its lease ran out) never
    deadlocks with the one recovering them.

    `booted_at`, on SQLite, is when this machine last started: a batch claimed
    before it may have lost its newest outcomes with the power (they are
    committed without an fsync), so every unsettled delivery of it is in doubt."""
    guard = and_(batches.c.id == batch.id, batches.c.status == BatchStatus.IN_FLIGHT, batches.c.claimed_by == batch.claimed_by)
    if not conn.execute(update(batches).where(guard).values(status=BatchStatus.PENDING, claimed_by=None)).rowcount:
        return None  # finished, or recovered by another scheduler, meanwhile
    provider = batch.provider or ""
    error = f"the lease of scheduler {batch.claimed_by} ran out while this was with {provider}; it may have been delivered"
    doubtful: Sequence[int] = []
    if not idempotent.get(provider, False):
        tried = select(deliveries.c.id).where(TRIED_IN_CLAIM).order_by(deliveries.c.id)
        # One by one, each settled before the next: only the first unsettled can have been on the wire.
        one_at_most = settles_each.get(provider, False) and not (booted_at and batch.claimed_at < booted_at)
        doubtful = conn.execute(tried.limit(1) if one_at_most else tried, _batch(batch)).scalars().all()
    line = None
    if doubtful:
        conn.execute(update(deliveries).where(deliveries.c.id.in_(doubtful)).values(status=DeliveryStatus.IN_DOUBT, error=error))
        line = f"send #{batch.send_id} batch {batch.number}: {len(doubtful)} delivery(ies) in doubt; {error}"
    close_batch(conn, batch, now)
    return line


def forget_expired(conn: Connection, now: dt.datetime) -> None:
    """The rows of schedulers whose lease ran out, once their batches are recovered."""
    conn.execute(delete(schedulers).where(schedulers.c.lease_until <= now))


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


FREEZE_LOCK = 727473  # PostgreSQL advisory lock: one freeze at a time numbers deliveries


def freeze(conn: Connection, send_id: int, batch_size: int, now: dt.datetime) -> bool:
    """queued → sending, with every active subscriber in numbered batches; False if another won.

    One INSERT … SELECT writes a row per batch listing its readers (batches.members) and the
    range of delivery ids they get, whatever the list's size; the batch's first claim writes the
    deliveries themselves (materialise). The readers are the ones active now: this is the freeze."""
    won = conn.execute(update(sends).where(sends.c.id == send_id, sends.c.status == SendStatus.QUEUED)
                       .values(status=SendStatus.SENDING, started_at=now, last_progress_at=now)).rowcount
    if not won:
        return False
    postgres = conn.dialect.name == "postgresql"
    if postgres:
        # Only freezes number deliveries: with them in line, the sequence's next ids are this freeze's alone.
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": FREEZE_LOCK})
        base = int(conn.execute(text("SELECT nextval(pg_get_serial_sequence('deliveries', 'id'))")).scalar_one()) - 1
    else:  # SQLite: a writer holds the database's one write lock (BEGIN IMMEDIATE)
        base = int(conn.execute(select(func.max(func.coalesce(select(func.max(deliveries.c.id)).scalar_subquery(), 0),
                                                func.coalesce(select(func.max(batches.c.last_delivery)).scalar_subquery(), 0))))
                   .scalar_one())
    ranked = (select(subscribers.c.id, ((func.row_number().over(order_by=subscribers.c.id) - 1) // batch_size).label("number"))
              .where(subscribers.c.status == SubscriberStatus.ACTIVE).subquery())
    size = func.count()
    conn.execute(insert(batches).from_select(
        ["send_id", "number", "status", "first_delivery", "last_delivery", "members"],
        select(literal(send_id), ranked.c.number, literal(BatchStatus.PENDING.value),
               ranked.c.number * batch_size + (base + 1), ranked.c.number * batch_size + base + size,
               func.aggregate_strings(cast(ranked.c.id, Text), ","))
        .group_by(ranked.c.number)))
    count = int(conn.execute(select(func.coalesce(func.max(batches.c.last_delivery), base)).where(batches.c.send_id == send_id))
                .scalar_one()) - base
    if postgres and count:
        conn.execute(text("SELECT setval(pg_get_serial_sequence('deliveries', 'id'), :last)"), {"last": base + count})
    finish_if_complete(conn, send_id)  # at once, when there is nobody to send to
    return True


# A batch's deliveries written from its sorted list of readers in one statement, server-side:
# an array on PostgreSQL, a JSON array on SQLite; the n-th reader gets delivery first + n.
_MATERIALISE = {
    "postgresql": text(
        "INSERT INTO deliveries (id, send_id, batch_number, subscriber_id, status, attempts) "
        "SELECT :first + n - 1, :send_id, :number, reader, :status, 0 "
        "FROM unnest(CAST(:readers AS integer[])) WITH ORDINALITY AS listed(reader, n)"),
    "sqlite": text(
        "INSERT INTO deliveries (id, send_id, batch_number, subscriber_id, status, attempts) "
        "SELECT :first + key, :send_id, :number, value, :status, 0 FROM json_each(:readers)"),
}


def materialise(conn: Connection, batch: Any) -> None:
    """The deliveries a freeze listed for this batch, written by the claim that first takes it,
    numbered first_delivery onwards in the readers' order."""
    readers = sorted(int(reader) for reader in batch.members.split(","))
    postgres = conn.dialect.name == "postgresql"
    conn.execute(_MATERIALISE["postgresql" if postgres else "sqlite"], {
        "first": batch.first_delivery, "send_id": batch.send_id, "number": batch.number, "status": DeliveryStatus.PENDING.value,
        "readers": readers if postgres else json.dumps(readers)})
    conn.execute(update(batches).where(batches.c.id == batch.id).values(members=None))


def materialise_pending(conn: Connection) -> None:
    """Every batch's deliveries written, as before lists of readers (migration 0008's way down)."""
    listed = select(batches.c.id, batches.c.send_id, batches.c.number, batches.c.first_delivery, batches.c.members)
    for batch in conn.execute(listed.where(batches.c.members.is_not(None))).all():
        materialise(conn, batch)


def finish_settled_sends(conn: Connection) -> list[int]:
    """Sends whose every batch is done (after a migration or an editor's decision) are sent."""
    ids = conn.execute(select(sends.c.id).where(sends.c.status == SendStatus.SENDING)).scalars().all()
    return [i for i in ids if finish_if_complete(conn, i)]


@dataclass(frozen=True)
class Claimed:
    batch: Row[Any]
    rows: Sequence[Any]  # named rows: delivery_id, subscriber_id, email, name, attempts, deferred_since, of the active recipients
    skipped: int  # unsubscribed (or bounced…) since the freeze: recorded as skipped in the claim


def _claim_statement(skip_locked: bool) -> Any:
    due = (select(batches.c.id).join(sends, sends.c.id == batches.c.send_id)
           .where(batches.c.status == BatchStatus.PENDING, sends.c.status == SendStatus.SENDING,
                  or_(batches.c.not_before.is_(None), batches.c.not_before <= NOW))
           .order_by(batches.c.send_id, batches.c.number).limit(1))
    if skip_locked:
        due = due.with_for_update(skip_locked=True, of=batches)
    return (update(batches).where(batches.c.id == due.scalar_subquery(), batches.c.status == BatchStatus.PENDING)
            .values(status=BatchStatus.IN_FLIGHT, claimed_by=bindparam("scheduler"), claimed_at=NOW, provider=bindparam("provider"))
            .returning(*batches.c))


TAKE = {skip_locked: _claim_statement(skip_locked) for skip_locked in (False, True)}
RECIPIENTS = (select(deliveries.c.id.label("delivery_id"), deliveries.c.subscriber_id, subscribers.c.email, subscribers.c.name,
                     deliveries.c.attempts, deliveries.c.deferred_since, subscribers.c.status.label("subscriber_status"))
              .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id).where(TRIED_IN_CLAIM).order_by(deliveries.c.id))


def claim(conn: Connection, scheduler_id: str, provider: str, now: dt.datetime, skip_locked: bool) -> Claimed | bool | None:
    """Take one due batch of a sending send: the Claimed, or None when none is due (or every due one is
    being claimed by another). One statement finds the batch and takes it, so no other can come between."""
    batch = conn.execute(TAKE[skip_locked], {"now": now, "scheduler": scheduler_id, "provider": provider}).one_or_none()
    if batch is None:
        return None
    if batch.members is not None:
        materialise(conn, batch)
    # Statuses are read here, just before sending: an unsubscribe since the freeze still counts.
    rows: Sequence[Any] = conn.execute(RECIPIENTS, _batch(batch)).all()
    gone = [row.delivery_id for row in rows if row.subscriber_status != SubscriberStatus.ACTIVE]
    if gone:
        conn.execute(update(deliveries).where(deliveries.c.id.in_(gone), deliveries.c.status.in_(UNSETTLED))
                     .values(status=DeliveryStatus.SKIPPED))
        rows = [row for row in rows if row.subscriber_status == SubscriberStatus.ACTIVE]
    return Claimed(batch, rows, len(gone))


# -- outcomes ----------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    status: DeliveryStatus
    reason: str
    attempts: int  # temporary refusals before this one
    deferred_since: dt.datetime | None


OPEN: tuple[str, ...] = (*UNSETTLED, DeliveryStatus.IN_DOUBT)  # what an outcome may overwrite
CHUNK = 1000  # ids per statement, within every dialect's limit on parameters
# One delivery sent, built once: building the statement anew was most of what recording a message cost.
_SENT_ONE = (update(deliveries).where(deliveries.c.id == bindparam("delivery_id"), deliveries.c.status.in_(OPEN))
             .values(status=DeliveryStatus.SENT, sent_at=bindparam("now"), error=None))


def _deferral(outcome: Outcome, now: dt.datetime, retry: Retry) -> tuple[DeliveryStatus, dict[str, Any]]:
    """A temporary refusal: tried again later, doubling the wait; past the retry window, a failure."""
    since = outcome.deferred_since or now
    tries = outcome.attempts + 1
    if now - since >= retry.window:
        hours = retry.window.total_seconds() / 3600
        return DeliveryStatus.FAILED, {"status": DeliveryStatus.FAILED, "next_attempt_at": None,
                                       "error": f"still refused after {tries} tries over {hours:g} hours: {outcome.reason}"}
    wait = retry.after * 2 ** outcome.attempts
    return DeliveryStatus.DEFERRED, {"status": DeliveryStatus.DEFERRED, "error": outcome.reason or None, "attempts": tries,
                                     "deferred_since": since, "next_attempt_at": min(now + wait, since + retry.window)}


def settle(conn: Connection, outcomes: Iterable[Outcome], now: dt.datetime, retry: Retry) -> list[DeliveryStatus]:
    """Record outcomes; a deferral past the retry window is a failure. Returns the statuses recorded, in order.

    Only a delivery not yet settled (or in doubt: the truth is better) is written,
    so a scheduler whose lease ran out can still record what the server told it.
    Outcomes that write the same values (a batch sent, a batch refused with one
    answer) are one statement: UPDATE … WHERE id IN (…) AND status is still open."""
    outcomes = list(outcomes)
    if len(outcomes) == 1 and outcomes[0].status == DeliveryStatus.SENT:  # SMTP's common case, once a message
        conn.execute(_SENT_ONE, {"delivery_id": outcomes[0].delivery_id, "now": now})
        return [DeliveryStatus.SENT]
    ids = [outcome.delivery_id for outcome in outcomes]
    if all(outcome.status == DeliveryStatus.SENT for outcome in outcomes) and len(set(ids)) == len(ids):
        _write(conn, {DeliveryStatus.SENT: ({"status": DeliveryStatus.SENT, "sent_at": now}, ids)})  # a batch taken whole
        return [DeliveryStatus.SENT] * len(ids)
    recorded: list[DeliveryStatus] = []
    groups: dict[Any, tuple[dict[str, Any], list[int]]] = {}  # what to write → (the columns, the deliveries)
    seen: set[int] = set()
    for outcome in outcomes:
        if outcome.delivery_id in seen:  # the same delivery twice: what came first is written first
            _write(conn, groups)
            seen.clear()
        status = outcome.status
        key: Any
        if status == DeliveryStatus.DEFERRED:
            status, values = _deferral(outcome, now, retry)
            key = tuple(values.items())
        else:
            key = (status, "" if status == DeliveryStatus.SENT else outcome.reason)
            values = {}
        group = groups.get(key)
        if group is None:
            if not values:
                values = {"status": status, "error": key[1] or None}
                if status == DeliveryStatus.SENT:
                    values["sent_at"] = now
            group = groups[key] = (values, [])
        group[1].append(outcome.delivery_id)
        seen.add(outcome.delivery_id)
        recorded.append(status)
    _write(conn, groups)
    return recorded


# deliveries.id among `ids`: on PostgreSQL one array parameter (a thousand parameters cost more to send than the update).
AMONG = {True: deliveries.c.id == any_(bindparam("ids", type_=ARRAY(Integer))),
         False: deliveries.c.id.in_(bindparam("ids", expanding=True))}
SENT = {postgres: update(deliveries).where(among, deliveries.c.status.in_(OPEN))
        .values(status=DeliveryStatus.SENT, sent_at=NOW, error=None) for postgres, among in AMONG.items()}


def _write(conn: Connection, groups: dict[Any, tuple[dict[str, Any], list[int]]]) -> None:
    postgres = conn.dialect.name == "postgresql"
    for values, ids in groups.values():
        sent = values["status"] == DeliveryStatus.SENT
        statement = SENT[postgres] if sent else update(deliveries).where(AMONG[postgres], deliveries.c.status.in_(OPEN)).values(values)
        for start in range(0, len(ids), CHUNK):
            conn.execute(statement, {"ids": ids[start:start + CHUNK], "now": values.get("sent_at")})
    groups.clear()


SETTLED_YET = select(func.count().filter(deliveries.c.status == DeliveryStatus.PENDING),
                     func.min(deliveries.c.next_attempt_at).filter(deliveries.c.status == DeliveryStatus.DEFERRED)).where(IN_BATCH)
HELD_BY = and_(batches.c.claimed_by == bindparam("scheduler"), batches.c.status == BatchStatus.IN_FLIGHT)
THIS_BATCH = batches.c.id == bindparam("batch_id", type_=Integer)
DONE = {guarded: update(batches).where(THIS_BATCH, *([HELD_BY] if guarded else []))
        .values(status=BatchStatus.DONE, finished_at=NOW, not_before=None) for guarded in (False, True)}
AGAIN = {guarded: update(batches).where(THIS_BATCH, *([HELD_BY] if guarded else []))
         .values(status=BatchStatus.PENDING, claimed_by=None, not_before=bindparam("not_before", type_=DateTime))
         for guarded in (False, True)}
PROGRESSED = update(sends).where(sends.c.id == bindparam("send_id", type_=Integer)).values(last_progress_at=NOW)


def close_batch(conn: Connection, batch: Any, now: dt.datetime, claimed_by: str | None = None) -> bool:
    """A batch whose claim ended: done when all its deliveries are settled, else claimable
    (at once for what was never tried, at the first retry time for what was deferred).
    With `claimed_by`, only while that scheduler still holds it in flight; False (nothing changed) otherwise."""
    untried, retry_at = conn.execute(SETTLED_YET, _batch(batch)).one()
    done = not untried and retry_at is None
    values = {"batch_id": batch.id, "scheduler": claimed_by, "now": now, "not_before": None if untried else retry_at}
    if not conn.execute((DONE if done else AGAIN)[claimed_by is not None], values).rowcount:
        return False
    conn.execute(PROGRESSED, {"send_id": batch.send_id, "now": now})
    if done:  # a send with a batch still open is not complete
        finish_if_complete(conn, batch.send_id)
    return True


def finish(conn: Connection, scheduler_id: str, batch: Row[Any], now: dt.datetime) -> bool:
    """End this scheduler's claim on the batch; False (and nothing changed) if the claim is no longer its own."""
    return close_batch(conn, batch, now, claimed_by=scheduler_id)


def pending_count(conn: Connection, now: dt.datetime) -> int:
    """Deliveries due to be tried now, in sends under way: the size of a run.

    A batch never claimed is all pending, its range of ids counted without reading a row
    (a freeze numbers a batch's deliveries in a row); the rows of the others are counted."""
    open_ = and_(sends.c.status == SendStatus.SENDING, batches.c.status.in_((BatchStatus.PENDING, BatchStatus.IN_FLIGHT)))
    fresh = conn.execute(select(func.coalesce(func.sum(batches.c.last_delivery - batches.c.first_delivery + 1), 0))
                         .join(sends, sends.c.id == batches.c.send_id).where(open_, batches.c.claimed_at.is_(None))).scalar()
    due = or_(deliveries.c.status == DeliveryStatus.PENDING,
              and_(deliveries.c.status == DeliveryStatus.DEFERRED, deliveries.c.next_attempt_at <= now))
    in_batch = and_(deliveries.c.id.between(batches.c.first_delivery, batches.c.last_delivery),
                    deliveries.c.send_id + 0 == batches.c.send_id, deliveries.c.batch_number == batches.c.number)
    tried = conn.execute(select(func.count()).select_from(batches.join(sends, sends.c.id == batches.c.send_id).join(deliveries, in_batch))
                         .where(open_, batches.c.claimed_at.is_not(None), due)).scalar()
    return int(fresh or 0) + int(tried or 0)


def next_retry(conn: Connection) -> dt.datetime | None:
    """When the earliest deferred delivery of a send under way is due."""
    return conn.execute(select(func.min(batches.c.not_before)).join(sends, sends.c.id == batches.c.send_id).where(
        batches.c.status == BatchStatus.PENDING, sends.c.status == SendStatus.SENDING)).scalar()


def sends_with(conn: Connection, ids: Iterable[int], status: SendStatus) -> list[int]:
    return sorted(conn.execute(select(sends.c.id).where(sends.c.status == status, sends.c.id.in_(list(ids)))).scalars())
