"""Subscriber operations. The rule they all keep: a suppression (unsubscribed,
bounced, complained) is never deleted and never made active again, except by
the subscriber's own explicit re-subscribe."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from ..errors import NewsletterError
from .fields import InvalidEmail, InvalidField, clean_name, fit, normalise_address
from .schema import ACTIVE, PENDING, STATUSES, SUPPRESSED, SubscriberStatus, subscriber_events, subscribers, utcnow

__all__ = ["InvalidEmail", "InvalidField", "Subscriber", "SubscriberError", "SubscriberStatus"]


class SubscriberError(NewsletterError):
    """An operation on the list that cannot be done as asked; str() says what to do."""


@dataclass(frozen=True)
class Subscriber:
    id: int
    email: str
    name: str
    status: str
    source: str
    attributes: dict[str, Any]
    created_at: dt.datetime | None = None
    status_changed_at: dt.datetime | None = None


@dataclass(frozen=True)
class StatusChange:
    at: dt.datetime
    status: str
    source: str  # the import file, command, unsubscribe link or webhook event id


def email_key(address: str) -> tuple[str, str]:
    """(the address as stored, its key), or InvalidEmail; see fields.normalise_address."""
    return normalise_address(address)


def _row(row: Any) -> Subscriber:
    return Subscriber(
        id=row.id, email=row.email, name=row.name, status=row.status, source=row.source,
        attributes=dict(row.attributes or {}), created_at=row.created_at, status_changed_at=row.status_changed_at,
    )


def find(conn: Connection, address: str) -> Subscriber | None:
    _, key = normalise_address(address, deliverable=False)
    row = conn.execute(select(subscribers).where(subscribers.c.email_key == key)).first()
    return _row(row) if row else None


def get(conn: Connection, subscriber_id: int) -> Subscriber | None:
    row = conn.execute(select(subscribers).where(subscribers.c.id == subscriber_id)).first()
    return _row(row) if row else None


def _written(conn: Connection, subscriber_id: int) -> Subscriber:
    """A subscriber this transaction has just written or read, so certainly there."""
    found = get(conn, subscriber_id)
    if found is None:
        raise SubscriberError(f"no subscriber with id {subscriber_id}")
    return found


def _record(conn: Connection, subscriber_id: int, status: str, source: str, now: Any) -> None:
    conn.execute(insert(subscriber_events).values(subscriber_id=subscriber_id, at=now, status=status, source=source))


def _insert(conn: Connection, email: str, key: str, name: str, status: str, source: str,
            attributes: dict[str, Any] | None = None) -> int:
    now = utcnow()
    source = fit(source)
    new_id = conn.execute(
        insert(subscribers).values(
            email=email, email_key=key, name=name, attributes=attributes or {}, status=status,
            source=source, created_at=now, updated_at=now, status_changed_at=now,
        ).returning(subscribers.c.id)
    ).scalar_one()
    _record(conn, new_id, status, source, now)
    return int(new_id)


def add(conn: Connection, address: str, name: str = "", source: str = "added by the editor") -> tuple[Subscriber, bool]:
    """Add an active subscriber. Returns (subscriber, added?). An existing
    address is left as it is; a suppressed one stays suppressed; a pending one
    (signed up, not yet confirmed) becomes active, as a new address would.
    InvalidEmail or InvalidField when the address or name cannot be stored."""
    email, key = email_key(address)
    name = clean_name(name)
    existing = find(conn, email)
    if existing and existing.status == PENDING:
        return activate(conn, existing.id, source), True
    if existing:
        if name and not existing.name and existing.status == ACTIVE:  # a suppressed record is left as it is
            conn.execute(update(subscribers).where(subscribers.c.id == existing.id).values(name=name, updated_at=utcnow()))
        return existing, False
    return _written(conn, _insert(conn, email, key, name, ACTIVE, source)), True


def set_status(conn: Connection, subscriber_id: int, status: str, source: str) -> bool:
    """Change a status and record why; returns False when it was already so.

    Reactivation is refused here: only resubscribe() may do that.
    """
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    current = conn.execute(select(subscribers.c.status).where(subscribers.c.id == subscriber_id)).scalar()
    if current is None:
        raise SubscriberError(f"no subscriber with id {subscriber_id}")
    if current == status:
        return False
    if status in (ACTIVE, PENDING):
        raise SubscriberError("a subscriber becomes active or pending only through add, resubscribe or a confirmed signup")
    now = utcnow()
    source = fit(source)
    conn.execute(
        update(subscribers).where(subscribers.c.id == subscriber_id)
        .values(status=status, source=source, updated_at=now, status_changed_at=now)
    )
    _record(conn, subscriber_id, status, source, now)
    return True


def suppress(conn: Connection, address: str, status: str, source: str) -> tuple[Subscriber, str | None]:
    """Record an unsubscribe, bounce or complaint: (subscriber, their status before,
    None when the address was not on the list). An address not on the list is
    kept as a suppression too, so that no later import or add makes it active.
    An address already suppressed keeps its first reason."""
    if status not in SUPPRESSED:
        raise ValueError(f"{status!r} is not a suppression")
    email, key = normalise_address(address, deliverable=False)  # an address we cannot deliver to is still suppressed
    existing = find(conn, email)
    if existing is None:
        return _written(conn, _insert(conn, email, key, "", status, source)), None
    if existing.status not in SUPPRESSED:  # active, or pending: a bounced confirmation suppresses too
        set_status(conn, existing.id, status, source)
    return _written(conn, existing.id), existing.status


def unsubscribe(conn: Connection, address: str, source: str) -> Subscriber:
    """Record an unsubscribe; see suppress()."""
    return suppress(conn, address, SubscriberStatus.UNSUBSCRIBED, source)[0]


def resubscribe(conn: Connection, address: str, source: str) -> Subscriber:
    """The subscriber's own request to receive the newsletter again."""
    email, key = email_key(address)
    existing = find(conn, email)
    if existing is None:
        return _written(conn, _insert(conn, email, key, "", ACTIVE, source))
    return activate(conn, existing.id, source)


def add_pending(conn: Connection, address: str, name: str, source: str) -> Subscriber:
    """A new address from the signup form: pending, sent nothing but its confirmation,
    until the subscriber confirms (see signup.py). InvalidEmail or InvalidField as add()."""
    email, key = email_key(address)
    return _written(conn, _insert(conn, email, key, clean_name(name), PENDING, source))


def activate(conn: Connection, subscriber_id: int, source: str) -> Subscriber:
    """Make a subscriber active: only for their own request (a confirmed signup,
    `add --resubscribe`) or the editor's add of a pending address; never for a suppression otherwise."""
    current = get(conn, subscriber_id)
    if current is None:
        raise SubscriberError(f"no subscriber with id {subscriber_id}")
    if current.status != ACTIVE:
        now = utcnow()
        source = fit(source)
        conn.execute(
            update(subscribers).where(subscribers.c.id == subscriber_id)
            .values(status=ACTIVE, source=source, updated_at=now, status_changed_at=now)
        )
        _record(conn, subscriber_id, ACTIVE, source, now)
    return _written(conn, subscriber_id)


def history(conn: Connection, subscriber_id: int) -> list[StatusChange]:
    """Every status the subscriber has had, in the order recorded, with when and where it came from."""
    query = (select(subscriber_events.c.at, subscriber_events.c.status, subscriber_events.c.source)
             .where(subscriber_events.c.subscriber_id == subscriber_id)
             .order_by(subscriber_events.c.id))
    return [StatusChange(at=row.at, status=row.status, source=row.source) for row in conn.execute(query)]


def histories(conn: Connection, subscriber_ids: list[int]) -> dict[int, list[StatusChange]]:
    """history() of each of these subscribers at once (an export reads them a chunk at a time)."""
    found: dict[int, list[StatusChange]] = {number: [] for number in subscriber_ids}
    query = (select(subscriber_events.c.subscriber_id, subscriber_events.c.at, subscriber_events.c.status,
                    subscriber_events.c.source)
             .where(subscriber_events.c.subscriber_id.in_(subscriber_ids)).order_by(subscriber_events.c.id))
    for row in conn.execute(query):
        found[row.subscriber_id].append(StatusChange(at=row.at, status=row.status, source=row.source))
    return found


def iter_subscribers(conn: Connection, statuses: tuple[str, ...] = STATUSES) -> Iterator[Subscriber]:
    query = select(subscribers).where(subscribers.c.status.in_(statuses)).order_by(subscribers.c.id)
    for row in conn.execute(query.execution_options(yield_per=1000)):
        yield _row(row)


def counts(conn: Connection) -> dict[str, int]:
    """How many subscribers have each status (every status listed, zeros included)."""
    found: dict[str, int] = dict(conn.execute(select(subscribers.c.status, func.count()).group_by(subscribers.c.status)).all())
    return {status: int(found.get(status, 0)) for status in STATUSES}


def is_suppressed(status: str) -> bool:
    return status in SUPPRESSED
