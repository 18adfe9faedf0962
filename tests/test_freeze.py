"""A freeze fixes a send's list in a moment, and the deliveries its claims write never collide."""

from __future__ import annotations

from sqlalchemy import func, select

from newsletter.store import Store
from newsletter.store import deliveries as ops
from newsletter.store.schema import deliveries, utcnow
from newsletter.store.sends import queue

from .conftest import add_readers


def test_two_sends_frozen_before_either_is_claimed_get_their_own_delivery_ids(store: Store) -> None:
    add_readers(store, 25)
    now = utcnow()
    with store.begin() as conn:
        first = queue(conn, "say-what-you-mean", "Say what you mean", "<p>hi</p>", "hi", now)
        second = queue(conn, "say-what-you-mean", "Say what you mean", "<p>hi</p>", "hi", now, again=True)
        assert ops.freeze(conn, first, 10, now)
    add_readers(store, 5, start=25)  # joined after the first freeze: in the second send only
    with store.begin() as conn:
        assert ops.freeze(conn, second, 10, now)
    claims = 0
    while True:
        with store.begin() as conn:
            claimed = ops.claim(conn, "scheduler-a", "outbox", now, skip_locked=False)
        if not isinstance(claimed, ops.Claimed):
            break
        claims += 1
    with store.engine.connect() as conn:
        per_send: dict[int, int] = dict(conn.execute(select(deliveries.c.send_id, func.count(func.distinct(deliveries.c.subscriber_id)))
                                     .group_by(deliveries.c.send_id)).all())
        rows = conn.execute(select(func.count()).select_from(deliveries)).scalar()
    assert claims == 3 + 3 and per_send == {first: 25, second: 30} and rows == 55
