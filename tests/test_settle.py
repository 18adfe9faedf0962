"""Outcomes are recorded a group at a time, and a settled delivery is never overwritten."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import insert, select, update

from newsletter.store import Store
from newsletter.store import deliveries as ops
from newsletter.store.deliveries import Outcome, Retry
from newsletter.store.schema import DeliveryStatus, deliveries, subscribers, utcnow
from newsletter.store.sends import queue

RETRY = Retry(after=dt.timedelta(minutes=5), window=dt.timedelta(hours=24))
EARLIER = dt.datetime(2027, 3, 6, 9, 0)
BEFORE = {  # reader → (status, error, sent_at) before the outcomes arrive
    "sent": (DeliveryStatus.SENT, None, EARLIER),
    "failed": (DeliveryStatus.FAILED, "550 5.1.1 no such user", None),
    "skipped": (DeliveryStatus.SKIPPED, None, None),
    "in-doubt": (DeliveryStatus.IN_DOUBT, "the lease ran out", None),
    "deferred": (DeliveryStatus.DEFERRED, "451 try later", None),
    "pending": (DeliveryStatus.PENDING, None, None),
}


def frozen(store: Store) -> dict[str, int]:
    """A send frozen for one reader per starting status, set as BEFORE says: reader → delivery id."""
    now = utcnow()
    with store.begin() as conn:
        conn.execute(insert(subscribers), [
            dict(email=f"{name}@example.net", email_key=f"{name}@example.net", name="", attributes={}, status="active",
                 source="test", created_at=now, updated_at=now, status_changed_at=now) for name in BEFORE])
        send_id = queue(conn, "say-what-you-mean", "Say what you mean", "<p>hi</p>", "hi", now)
        assert ops.freeze(conn, send_id, 1000, now)
        ops.materialise_pending(conn)  # as the batches' claims would
        ids = dict(conn.execute(select(subscribers.c.email, deliveries.c.id)
                                .join(deliveries, deliveries.c.subscriber_id == subscribers.c.id)).all())
        found = {email.removesuffix("@example.net"): delivery for email, delivery in ids.items()}
        for name, (status, error, sent_at) in BEFORE.items():
            conn.execute(update(deliveries).where(deliveries.c.id == found[name]).values(status=status, error=error, sent_at=sent_at))
    return found


def recorded(store: Store, ids: dict[str, int]) -> dict[str, tuple[str, str | None, dt.datetime | None]]:
    with store.engine.connect() as conn:
        rows = {row.id: row for row in conn.execute(select(deliveries))}
    return {name: (rows[i].status, rows[i].error, rows[i].sent_at) for name, i in ids.items()}


def test_a_batch_sent_at_once_leaves_settled_deliveries_as_they_were(store: Store) -> None:
    ids = frozen(store)
    now = utcnow()
    with store.begin() as conn:
        statuses = ops.settle(conn, [Outcome(i, DeliveryStatus.SENT, "", 0, None) for i in ids.values()], now, RETRY)
    assert statuses == [DeliveryStatus.SENT] * len(ids)
    assert recorded(store, ids) == {
        "sent": ("sent", None, EARLIER),  # not sent again at a new time
        "failed": ("failed", "550 5.1.1 no such user", None),
        "skipped": ("skipped", None, None),
        "in-doubt": ("sent", None, now),  # the truth replaces the doubt
        "deferred": ("sent", None, now),
        "pending": ("sent", None, now),
    }


def test_a_batch_refused_at_once_touches_only_what_was_open(store: Store) -> None:
    ids = frozen(store)
    with store.begin() as conn:
        ops.settle(conn, [Outcome(i, DeliveryStatus.FAILED, "554 5.7.1 rejected", 0, None) for i in ids.values()], utcnow(), RETRY)
    got = recorded(store, ids)
    assert got["sent"] == ("sent", None, EARLIER) and got["skipped"] == ("skipped", None, None)
    assert got["failed"] == ("failed", "550 5.1.1 no such user", None)
    assert {got[name] for name in ("in-doubt", "deferred", "pending")} == {("failed", "554 5.7.1 rejected", None)}


def test_outcomes_for_one_delivery_are_recorded_in_the_order_given(store: Store) -> None:
    ids = frozen(store)
    first, second = ids["pending"], ids["deferred"]
    with store.begin() as conn:
        ops.settle(conn, [Outcome(first, DeliveryStatus.IN_DOUBT, "cut off", 0, None),
                          Outcome(second, DeliveryStatus.DEFERRED, "451 later", 0, None),
                          Outcome(second, DeliveryStatus.IN_DOUBT, "cut off", 0, None)], utcnow(), RETRY)
    got = recorded(store, ids)
    assert got["pending"][:2] == ("in_doubt", "cut off")
    assert got["deferred"][:2] == ("in_doubt", "cut off"), "the later outcome of the same delivery is the one kept"


def test_one_message_sent_at_a_time_leaves_settled_deliveries_as_they_were(store: Store) -> None:
    """SMTP records each message alone: the same rule holds there."""
    ids = frozen(store)
    now = utcnow()
    for delivery in ids.values():
        with store.begin() as conn:
            ops.settle(conn, [Outcome(delivery, DeliveryStatus.SENT, "", 0, None)], now, RETRY)
    after = recorded(store, ids)
    assert after["sent"] == ("sent", None, EARLIER) and after["failed"] == ("failed", "550 5.1.1 no such user", None)
    assert after["skipped"] == ("skipped", None, None)
    assert after["in-doubt"] == after["pending"] == after["deferred"] == ("sent", None, now)
