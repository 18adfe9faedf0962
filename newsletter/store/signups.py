"""Signup requests from the form: what the rate limits count, what a confirmation
link names, and, once confirmed, the consent record (time, form, truncated IP)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, text, update

from .fields import fit
from .schema import signups


class SignupKind(StrEnum):
    CONFIRM = "confirm"  # a confirmation email with a link that activates
    NOTICE = "notice"  # an "already subscribed" email to an active address: changes nothing


@dataclass(frozen=True)
class Signup:
    id: int
    subscriber_id: int
    kind: str
    requested_at: dt.datetime
    form: str
    requested_ip: str
    confirmed_at: dt.datetime | None
    confirmed_ip: str | None


def _row(row: Any) -> Signup:
    return Signup(id=row.id, subscriber_id=row.subscriber_id, kind=row.kind, requested_at=row.requested_at, form=row.form,
                  requested_ip=row.requested_ip, confirmed_at=row.confirmed_at, confirmed_ip=row.confirmed_ip)


def serialise(conn: Connection, *keys: str) -> None:
    """Make concurrent signups for the same keys (a network, an address) take turns until
    this transaction ends, so a limit counted here holds under a flood. SQLite needs
    nothing: a writing transaction holds the database's write lock from its start."""
    if conn.dialect.name == "postgresql":
        for key in keys:  # always in the same order (network, then address): no deadlock
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"newsletter.signup:{key}"})


def record(conn: Connection, subscriber_id: int, kind: SignupKind, form: str, ip: str, now: dt.datetime) -> Signup:
    return _row(conn.execute(insert(signups).values(
        subscriber_id=subscriber_id, kind=kind, requested_at=now, form=fit(form), requested_ip=fit(ip, 64),
    ).returning(*signups.c)).one())


def get(conn: Connection, signup_id: int) -> Signup | None:
    row = conn.execute(select(signups).where(signups.c.id == signup_id)).first()
    return _row(row) if row else None


def forget(conn: Connection, signup_id: int) -> None:
    """A request whose email could not be sent: it counts for nothing and its link confirms nothing."""
    conn.execute(delete(signups).where(signups.c.id == signup_id, signups.c.confirmed_at.is_(None)))


def newest_confirmation(conn: Connection, subscriber_id: int) -> int | None:
    """The id of the newest confirmation request: every older link was replaced by it."""
    return conn.execute(select(func.max(signups.c.id)).where(
        signups.c.subscriber_id == subscriber_id, signups.c.kind == SignupKind.CONFIRM)).scalar()


def count_for_subscriber(conn: Connection, subscriber_id: int, since: dt.datetime) -> int:
    return int(conn.execute(select(func.count()).where(
        signups.c.subscriber_id == subscriber_id, signups.c.requested_at >= since)).scalar() or 0)


def count_from(conn: Connection, ip: str, since: dt.datetime) -> int:
    return int(conn.execute(select(func.count()).where(
        signups.c.requested_ip == ip, signups.c.requested_at >= since)).scalar() or 0)


def mark_confirmed(conn: Connection, signup_id: int, ip: str, now: dt.datetime) -> bool:
    """Record the consent; False when it was already confirmed (compare-and-set: one wins)."""
    return conn.execute(update(signups).where(signups.c.id == signup_id, signups.c.confirmed_at.is_(None))
                        .values(confirmed_at=now, confirmed_ip=fit(ip, 64))).rowcount == 1


def consents(conn: Connection, subscriber_id: int) -> list[Signup]:
    """Every confirmed signup of a subscriber, oldest first: their consent records."""
    query = (select(signups).where(signups.c.subscriber_id == subscriber_id, signups.c.confirmed_at.is_not(None))
             .order_by(signups.c.id))
    return [_row(row) for row in conn.execute(query)]


def consents_of(conn: Connection, subscriber_ids: list[int]) -> dict[int, list[Signup]]:
    """consents() of each of these subscribers at once (an export reads them a chunk at a time)."""
    found: dict[int, list[Signup]] = {number: [] for number in subscriber_ids}
    query = (select(signups).where(signups.c.subscriber_id.in_(subscriber_ids), signups.c.confirmed_at.is_not(None))
             .order_by(signups.c.id))
    for row in conn.execute(query):
        found[row.subscriber_id].append(_row(row))
    return found
