"""Sends as the editor sees them: queue, list, look into, cancel, resolve.

The scheduler's own queries (claims, outcomes, leases) are in store/deliveries.py.
The rule here: the editor's word is the only thing that sends again what may
have been delivered (`resolve --resend`), and marking sent touches only what is
in doubt: a failed delivery stays failed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import Connection, bindparam, func, insert, select, update

from ..errors import NewsletterError
from .fields import column_length
from .schema import (
    NEEDS_EDITOR,
    BatchStatus,
    DeliveryStatus,
    SendStatus,
    SubscriberStatus,
    batches,
    deliveries,
    sends,
    subscribers,
    utcnow,
)

OPEN: tuple[str, ...] = (SendStatus.QUEUED, SendStatus.HELD, SendStatus.SENDING)  # a send that will still mail people
ALREADY: tuple[str, ...] = (*OPEN, SendStatus.SENT)


class SendError(NewsletterError):
    """The editor asked for something that cannot be done as asked; str() says why and what to do."""


RATE_WINDOW = dt.timedelta(minutes=1)  # a running send's pace is what it sent over the last minute


@dataclass(frozen=True)
class Progress:
    """How far a running send is, from the database alone: any machine can ask."""

    done: int  # deliveries with an outcome for good (sent, failed, skipped, in doubt)
    total: int
    per_minute: float  # sent over the last minute (or since the send started, when that is sooner)
    untried: int  # not tried yet; deferred ones wait for their retry time and are not counted here

    @property
    def seconds_left(self) -> float | None:
        """At the recent pace, for what is not tried yet; None when nothing went out lately."""
        if not self.untried:
            return 0.0
        return self.untried / self.per_minute * 60 if self.per_minute else None


@dataclass
class SendSummary:
    id: int
    issue_slug: str
    subject: str
    status: str
    scheduled_at: dt.datetime
    note: str
    counts: dict[str, int] = field(default_factory=dict)  # deliveries by DeliveryStatus
    started_at: dt.datetime | None = None
    recent: int = 0  # sent within RATE_WINDOW of `at`
    at: dt.datetime | None = None  # when these counts were read

    @property
    def recipients(self) -> int:
        return sum(self.counts.values())

    def count(self, status: DeliveryStatus) -> int:
        return self.counts.get(status, 0)

    @property
    def progress(self) -> Progress | None:
        """A send under way: how much is done, its pace and the time left; None for any other."""
        if self.status != SendStatus.SENDING or self.at is None:
            return None
        untried = self.count(DeliveryStatus.PENDING)
        done = self.recipients - untried - self.count(DeliveryStatus.DEFERRED)
        window = RATE_WINDOW.total_seconds()
        if self.started_at is not None:
            window = min(window, max((self.at - self.started_at).total_seconds(), 1.0))
        return Progress(done, self.recipients, self.recent * 60 / window, untried)


@dataclass(frozen=True)
class Missed:
    """A recipient the send has not (or not surely) reached, and why."""

    email: str
    name: str
    status: str
    reason: str
    attempts: int
    next_attempt_at: dt.datetime | None


def active_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).where(subscribers.c.status == SubscriberStatus.ACTIVE)).scalar() or 0)


def existing_sends(conn: Connection, slug: str) -> list[tuple[int, str]]:
    """(id, status) of the sends of this issue that went out or still will."""
    rows = conn.execute(select(sends.c.id, sends.c.status).where(sends.c.issue_slug == slug, sends.c.status.in_(ALREADY)))
    return [(row.id, row.status) for row in rows]


def queue(conn: Connection, slug: str, subject: str, html: str, text: str, at: dt.datetime, again: bool = False) -> int:
    """Queue the built issue for `at` (naive UTC); refuses a second send of the
    same issue unless `again` says the editor means it."""
    for what, value, column in (("slug", slug, sends.c.issue_slug), ("title", subject, sends.c.subject)):
        if len(value) > column_length(column):  # essays.py refuses these first; this keeps the database's error away
            raise SendError(f"the issue's {what} is {len(value)} characters long and a send records at most "
                            f"{column_length(column)}: shorten the essay's '{what}:'")
    if any("\x00" in value for value in (slug, subject, html, text)):
        raise SendError(f"the built issue '{slug[:60]}' holds a NUL character, which no email may carry; remove it from the essay")
    earlier = existing_sends(conn, slug)
    if earlier and not again:
        listed = ", ".join(f"#{i} ({status})" for i, status in earlier)
        raise SendError(f"'{slug}' is already {earlier[0][1]} as send {listed}; pass --again to send it once more")
    now = utcnow()
    return int(conn.execute(
        insert(sends).values(issue_slug=slug, subject=subject, html=html, text=text, status=SendStatus.QUEUED,
                             scheduled_at=at, created_at=now, late_ok=False, note="").returning(sends.c.id)
    ).scalar_one())


def summaries(conn: Connection, send_id: int | None = None, now: dt.datetime | None = None) -> list[SendSummary]:
    """Every send (or just `send_id`) with its deliveries counted by outcome, and the progress of those under way."""
    now = now or utcnow()
    query = select(sends.c.id, sends.c.issue_slug, sends.c.subject, sends.c.status, sends.c.scheduled_at, sends.c.note,
                   sends.c.started_at)
    if send_id is not None:
        query = query.where(sends.c.id == send_id)
    found = {
        row.id: SendSummary(row.id, row.issue_slug, row.subject, row.status, row.scheduled_at, row.note,
                            started_at=row.started_at, at=now)
        for row in conn.execute(query.order_by(sends.c.id))
    }
    # One pass over the deliveries counts outcomes and the recent pace alike.
    counts = select(deliveries.c.send_id, deliveries.c.status, func.count().label("number"),
                    func.count().filter(deliveries.c.sent_at >= now - RATE_WINDOW).label("recent")).group_by(
        deliveries.c.send_id, deliveries.c.status)
    if send_id is not None:
        counts = counts.where(deliveries.c.send_id == send_id)
    for row in conn.execute(counts):
        if row.send_id in found:
            found[row.send_id].counts[row.status] = int(row.number)
            found[row.send_id].recent += int(row.recent)
    # A batch no claim has taken yet has no delivery rows: its readers are all pending.
    unclaimed = (select(batches.c.send_id, func.sum(batches.c.last_delivery - batches.c.first_delivery + 1).label("number"))
                 .where(batches.c.members.is_not(None)).group_by(batches.c.send_id))
    if send_id is not None:
        unclaimed = unclaimed.where(batches.c.send_id == send_id)
    for row in conn.execute(unclaimed):
        if row.send_id in found:
            counts_of = found[row.send_id].counts
            counts_of[DeliveryStatus.PENDING] = counts_of.get(DeliveryStatus.PENDING, 0) + int(row.number)
    return list(found.values())


def summary(conn: Connection, send_id: int) -> SendSummary:
    found = summaries(conn, send_id)
    if not found:
        raise SendError(f"there is no send #{send_id}; `newsletter sends` lists them")
    return found[0]


def missed(conn: Connection, send_id: int, statuses: tuple[str, ...] = NEEDS_EDITOR) -> Iterator[Missed]:
    """Every recipient of the send with one of these outcomes, in the order they were frozen."""
    query = (select(subscribers.c.email, subscribers.c.name, deliveries.c.status, deliveries.c.error, deliveries.c.attempts,
                    deliveries.c.next_attempt_at)
             .join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
             .where(deliveries.c.send_id == send_id, deliveries.c.status.in_(statuses))
             .order_by(deliveries.c.id))
    for row in conn.execute(query):
        yield Missed(row.email, row.name, row.status, row.error or "", row.attempts, row.next_attempt_at)


def _get_status(conn: Connection, send_id: int) -> str:
    status = conn.execute(select(sends.c.status).where(sends.c.id == send_id)).scalar()
    if status is None:
        raise SendError(f"there is no send #{send_id}; `newsletter sends` lists them")
    return str(status)


def cancel(conn: Connection, send_id: int) -> str:
    """Cancel a send. One in progress stops after the batch being sent now. Returns the status it had."""
    status = _get_status(conn, send_id)
    if status not in OPEN:
        raise SendError(f"send #{send_id} is {status} and cannot be cancelled")
    conn.execute(update(sends).where(sends.c.id == send_id, sends.c.status == status)
                 .values(status=SendStatus.CANCELLED, note=f"cancelled by the editor while {status}"))
    return status


def _reopen(conn: Connection, send_id: int, status: str, chosen: tuple[str, ...], now: dt.datetime) -> int:
    """Deliveries of the send with a `chosen` outcome become pending, their batches claimable, the send open."""
    numbers = select(deliveries.c.batch_number).where(deliveries.c.send_id == send_id, deliveries.c.status.in_(chosen))
    conn.execute(update(batches).where(batches.c.send_id == send_id, batches.c.number.in_(numbers),
                                       batches.c.status != BatchStatus.IN_FLIGHT)
                 .values(status=BatchStatus.PENDING, claimed_by=None, not_before=None, error=None))
    reopened = conn.execute(update(deliveries).where(deliveries.c.send_id == send_id, deliveries.c.status.in_(chosen)).values(
        status=DeliveryStatus.PENDING, error=None, attempts=0, deferred_since=None, next_attempt_at=None)).rowcount
    if status == SendStatus.SENT:
        conn.execute(update(sends).where(sends.c.id == send_id, sends.c.status == SendStatus.SENT)
                     .values(status=SendStatus.SENDING, finished_at=None, last_progress_at=now))
    return int(reopened)


def resolve(conn: Connection, send_id: int, *, resend: bool = False, mark_sent: bool = False,
            retry_failed: bool = False, send_late: bool = False) -> str:
    """The editor's decision on what the scheduler will not decide alone."""
    if sum((resend, mark_sent, retry_failed, send_late)) != 1:
        raise SendError("choose one of --resend, --mark-sent, --retry-failed or --send-late")
    status = _get_status(conn, send_id)
    now = utcnow()
    if send_late:
        if status != SendStatus.HELD:
            raise SendError(f"send #{send_id} is {status}, not held")
        started = conn.execute(select(sends.c.started_at).where(sends.c.id == send_id)).scalar()
        conn.execute(update(sends).where(sends.c.id == send_id).values(
            status=SendStatus.SENDING if started else SendStatus.QUEUED, late_ok=True,
            note="resumed on the editor's word", last_progress_at=now))
        return "the send goes on at the scheduler's next run"
    if status == SendStatus.CANCELLED:
        raise SendError(f"send #{send_id} is cancelled; queue the issue again with --again instead")
    wanted = DeliveryStatus.FAILED if retry_failed else DeliveryStatus.IN_DOUBT
    count = int(conn.execute(select(func.count()).where(deliveries.c.send_id == send_id, deliveries.c.status == wanted)).scalar() or 0)
    if not count:
        what = "failed" if retry_failed else "in doubt"
        raise SendError(f"send #{send_id} has no delivery {what}; `newsletter sends {send_id}` shows each outcome")
    if mark_sent:
        conn.execute(update(deliveries).where(deliveries.c.send_id == send_id, deliveries.c.status == DeliveryStatus.IN_DOUBT)
                     .values(status=DeliveryStatus.SENT, sent_at=now, error="marked sent by the editor"))
        finish_if_complete(conn, send_id)
        return f"{count} delivery(ies) in doubt marked sent"
    # The editor accepts that some of these readers may get the issue twice (resend), or
    # has fixed what made the server refuse them (retry-failed).
    _reopen(conn, send_id, status, (wanted,), now)
    return f"{count} delivery(ies) will be sent again at the scheduler's next run"


OPEN_BATCH = (select(batches.c.id).where(batches.c.status.in_((BatchStatus.PENDING, BatchStatus.IN_FLIGHT)),
                                         batches.c.send_id == bindparam("send_id")).limit(1))  # built once: asked after every batch


def finish_if_complete(conn: Connection, send_id: int) -> bool:
    """Mark the send sent when every batch is done; never before."""
    if conn.execute(OPEN_BATCH, {"send_id": send_id}).first() is not None:
        return False
    result = conn.execute(update(sends).where(sends.c.id == send_id, sends.c.status == SendStatus.SENDING)
                          .values(status=SendStatus.SENT, finished_at=utcnow()))
    return result.rowcount == 1
