"""Sends as the editor sees them: queue an issue, list, cancel, resolve.

A send freezes the built issue (subject, HTML, text) when it is queued, so
every batch, whichever scheduler sends it and whenever, carries the same email.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import Connection, func, insert, select, update

from .config import Settings
from .errors import NewsletterError
from .messages import Issue, Recipient
from .providers import DeliveryFailed, OutcomeUnknown, Provider
from .store.schema import batches, deliveries, sends, subscribers, utcnow
from .store.subscribers import email_key
from .tokens import TEST_COPY_SUBSCRIBER, Signer, load_secret, unsubscribe_url

OPEN = ("queued", "held", "sending")  # a send that will still mail people
ALREADY = OPEN + ("sent",)
TEST_MARK = "[TEST]"  # begins the subject of every test copy


class SendError(NewsletterError):
    """The editor asked for something that cannot be done as asked; str() says why and what to do."""


@dataclass
class SendSummary:
    id: int
    issue_slug: str
    subject: str
    status: str
    scheduled_at: dt.datetime
    note: str
    counts: dict[str, int] = field(default_factory=dict)  # deliveries by status
    in_doubt: list[int] = field(default_factory=list)  # batch numbers
    failed: list[int] = field(default_factory=list)

    @property
    def recipients(self) -> int:
        return sum(self.counts.values())


def parse_when(when: str, zone: str) -> dt.datetime:
    """'now', ISO 8601 with an offset, or a local time in `zone` → naive UTC (see send_time.py)."""
    from .send_time import SendTimeError, parse_send_time

    try:
        return parse_send_time(when, zone, utcnow()).utc
    except SendTimeError as exc:
        raise SendError(str(exc)) from None


def active_count(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).where(subscribers.c.status == "active")).scalar() or 0)


def existing_sends(conn: Connection, slug: str) -> list[tuple[int, str]]:
    """(id, status) of the sends of this issue that went out or still will."""
    rows = conn.execute(
        select(sends.c.id, sends.c.status).where(sends.c.issue_slug == slug, sends.c.status.in_(ALREADY))
    )
    return [(row.id, row.status) for row in rows]


def queue(conn: Connection, slug: str, subject: str, html: str, text: str, at: dt.datetime,
          again: bool = False) -> int:
    """Queue the built issue for `at` (naive UTC); refuses a second send of the
    same issue unless `again` says the editor means it."""
    earlier = existing_sends(conn, slug)
    if earlier and not again:
        listed = ", ".join(f"#{i} ({status})" for i, status in earlier)
        raise SendError(f"'{slug}' is already {earlier[0][1]} as send {listed}; pass --again to send it once more")
    now = utcnow()
    return int(conn.execute(
        insert(sends).values(
            issue_slug=slug, subject=subject, html=html, text=text, status="queued", scheduled_at=at,
            created_at=now, late_ok=False, note="",
        )
    ).inserted_primary_key[0])  # type: ignore[index]


def summaries(conn: Connection, send_id: int | None = None) -> list[SendSummary]:
    query = select(sends.c.id, sends.c.issue_slug, sends.c.subject, sends.c.status, sends.c.scheduled_at, sends.c.note)
    if send_id is not None:
        query = query.where(sends.c.id == send_id)
    found = {
        row.id: SendSummary(row.id, row.issue_slug, row.subject, row.status, row.scheduled_at, row.note)
        for row in conn.execute(query.order_by(sends.c.id))
    }
    counts = select(deliveries.c.send_id, deliveries.c.status, func.count()).group_by(deliveries.c.send_id, deliveries.c.status)
    for sid, status, number in conn.execute(counts):
        if sid in found:
            found[sid].counts[status] = int(number)
    troubled = select(batches.c.send_id, batches.c.number, batches.c.status).where(batches.c.status.in_(("in_doubt", "failed")))
    for sid, number, status in conn.execute(troubled.order_by(batches.c.number)):
        if sid in found:
            (found[sid].in_doubt if status == "in_doubt" else found[sid].failed).append(number)
    return list(found.values())


def _get_status(conn: Connection, send_id: int) -> str:
    status = conn.execute(select(sends.c.status).where(sends.c.id == send_id)).scalar()
    if status is None:
        raise SendError(f"there is no send #{send_id}; `newsletter sends` lists them")
    return status


def cancel(conn: Connection, send_id: int) -> str:
    """Cancel a send. One in progress stops after the batch being sent now.
    Returns the status it had."""
    status = _get_status(conn, send_id)
    if status not in OPEN:
        raise SendError(f"send #{send_id} is {status} and cannot be cancelled")
    conn.execute(update(sends).where(sends.c.id == send_id, sends.c.status == status)
                 .values(status="cancelled", note=f"cancelled by the editor while {status}"))
    return status


def resolve(conn: Connection, send_id: int, *, resend: bool = False, mark_sent: bool = False,
            send_late: bool = False) -> str:
    """The editor's decision on a send the scheduler would not finish alone."""
    if sum((resend, mark_sent, send_late)) != 1:
        raise SendError("choose one of --resend, --mark-sent or --send-late")
    status = _get_status(conn, send_id)
    troubled = batches.c.status.in_(("in_doubt", "failed"))
    if send_late:
        if status != "held":
            raise SendError(f"send #{send_id} is {status}, not held as overdue")
        started = conn.execute(select(sends.c.started_at).where(sends.c.id == send_id)).scalar()
        conn.execute(update(sends).where(sends.c.id == send_id).values(
            status="sending" if started else "queued", late_ok=True, note="sent late on the editor's word",
            last_progress_at=utcnow()))
        return "the overdue send will go out at the scheduler's next run"
    numbers = conn.execute(select(batches.c.number).where(batches.c.send_id == send_id, troubled)).scalars().all()
    if not numbers:
        raise SendError(f"send #{send_id} has no batch in doubt or failed")
    if resend:
        # The editor accepts that some of these readers may get the issue twice.
        conn.execute(update(batches).where(batches.c.send_id == send_id, troubled)
                     .values(status="pending", claimed_by=None, error=None))
        if status == "sent":
            conn.execute(update(sends).where(sends.c.id == send_id).values(status="sending"))
        return f"batch(es) {', '.join(map(str, numbers))} will be sent again at the scheduler's next run"
    now = utcnow()
    conn.execute(update(deliveries).where(
        deliveries.c.send_id == send_id, deliveries.c.batch_number.in_(numbers), deliveries.c.status == "pending"
    ).values(status="sent", sent_at=now, error="marked sent by the editor"))
    conn.execute(update(batches).where(batches.c.send_id == send_id, troubled)
                 .values(status="done", finished_at=now, error="marked sent by the editor"))
    finish_if_complete(conn, send_id)
    return f"batch(es) {', '.join(map(str, numbers))} marked sent"


def finish_if_complete(conn: Connection, send_id: int) -> bool:
    """Mark the send sent when every batch is done; never before."""
    open_batches = conn.execute(
        select(func.count()).where(batches.c.send_id == send_id, batches.c.status != "done")
    ).scalar()
    if open_batches:
        return False
    result = conn.execute(update(sends).where(sends.c.id == send_id, sends.c.status == "sending")
                          .values(status="sent", finished_at=utcnow()))
    return result.rowcount == 1


def send_test_copy(settings: Settings, provider: Provider, issue: Issue, address: str) -> str:
    """Send one copy of `issue` to `address` now, recording no send; returns the address.

    Its subject is marked [TEST]. Its unsubscribe link names no subscriber, so it
    unsubscribes nobody and opens a page saying it came from a test copy.
    """
    import dataclasses

    email, _ = email_key(address)
    link = unsubscribe_url(settings, Signer(load_secret(settings)).token(TEST_COPY_SUBSCRIBER, issue.slug))
    marked = dataclasses.replace(issue, subject=f"{TEST_MARK} {issue.subject}")
    try:
        provider.send(marked, [Recipient(email=email, name="", unsubscribe_url=link)])
    except (DeliveryFailed, OutcomeUnknown) as exc:
        raise SendError(f"the test copy was not sent: {exc}") from None
    return email


__all__ = ["SendError", "SendSummary", "active_count", "cancel", "parse_when", "queue", "resolve", "send_test_copy", "summaries"]
