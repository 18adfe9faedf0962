"""The migrations and schema.py describe the same database, on every dialect we support."""

from __future__ import annotations

import email
import email.policy
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import insert, text

from newsletter.config import Settings
from newsletter.store import Store
from newsletter.store.db import MIGRATIONS, create_database_engine, migrate
from newsletter.store.schema import metadata, subscribers, utcnow

from .conftest import add_readers

# The tables as 0006 left them: only the columns a send under way needs.
OLD_SENDS = sa.table("sends", *(sa.column(name) for name in (
    "id", "issue_slug", "subject", "html", "text", "status", "scheduled_at", "created_at", "started_at", "last_progress_at",
    "late_ok", "note")))
OLD_BATCHES = sa.table("batches", *(sa.column(name) for name in ("send_id", "number", "status")))
OLD_DELIVERIES = sa.table("deliveries", *(sa.column(name) for name in (
    "id", "send_id", "batch_number", "subscriber_id", "status", "sent_at", "attempts")))


def message_to(path: Path) -> str:
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    return str(message["To"].addresses[0].addr_spec)


def test_migrations_produce_exactly_the_schema(database_url: str) -> None:
    engine = create_database_engine(database_url)
    try:
        migrate(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
            differences = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert differences == [], "schema.py and the migrations disagree; add a migration:\n" + "\n".join(map(str, differences))


def test_sends_under_way_before_0007_go_on_after_it_each_reader_once(store_settings: Settings, database_url: str) -> None:
    """Two sends frozen at once under 0006 (their delivery ids interleave), each with a batch sent and
    one to go: after the upgrade the scheduler sends the rest, each reader once, and nothing sent again."""
    from newsletter.build import build, ready_issue
    from newsletter.providers import get_provider
    from newsletter.scheduler import Scheduler
    from newsletter.store import open_store

    engine = create_database_engine(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    _, issue = ready_issue(store_settings, "say-what-you-mean", build(store_settings))
    now = utcnow()
    people = [f"reader{n}@example.net" for n in range(8)]
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0006")
        conn.execute(insert(subscribers), [
            dict(id=n + 1, email=email, email_key=email, name="", attributes={}, status="active", source="old version",
                 created_at=now, updated_at=now, status_changed_at=now) for n, email in enumerate(people)])
        conn.execute(insert(OLD_SENDS), [
            dict(id=send, issue_slug=issue.slug, subject=issue.subject, html=issue.html, text=issue.text, status="sending",
                 scheduled_at=now, created_at=now, started_at=now, last_progress_at=now, late_ok=False, note="")
            for send in (1, 2)])
        conn.execute(insert(OLD_BATCHES), [
            dict(send_id=send, number=number, status="done" if number == 0 else "pending")
            for send in (1, 2) for number in (0, 1)])
        conn.execute(insert(OLD_DELIVERIES), [
            dict(id=2 * n + send, send_id=send, batch_number=n // 4, subscriber_id=n + 1, attempts=0,
                 status="sent" if n < 4 else "pending", sent_at=now if n < 4 else None)
            for n in range(8) for send in (1, 2)])
    engine.dispose()

    store = open_store(store_settings)
    try:
        report = Scheduler(store, store_settings, get_provider(store_settings), store_settings.secret).run_once()
        with store.engine.connect() as conn:
            statuses = {(send, status) for send, status in conn.execute(text("SELECT id, status FROM sends"))}
    finally:
        store.dispose()
    assert report.sent == 8 and report.completed == [1, 2] and statuses == {(1, "sent"), (2, "sent")}
    got = Counter((path.parent.name, message_to(path)) for path in store_settings.outbox_path.glob("send-*/*.eml"))
    assert got == Counter({(f"send-{send}", email): 1 for send in (1, 2) for email in people[4:]})


@pytest.mark.parametrize("down_to", ["0006", "base"])
def test_the_migrations_go_down_and_up_again_to_the_same_schema(database_url: str, down_to: str) -> None:
    engine = create_database_engine(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        migrate(engine)
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, down_to)
            if down_to == "base":
                assert not sa.inspect(conn).has_table("subscribers")  # every way down ran
            command.upgrade(config, "head")
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
            differences = compare_metadata(context, metadata)
            fillfactor = conn.execute(text("SELECT reloptions FROM pg_class WHERE relname = 'deliveries'")).scalar() \
                if engine.dialect.name == "postgresql" else ["fillfactor=50"]
    finally:
        engine.dispose()
    assert differences == [], "\n".join(map(str, differences))
    assert fillfactor == ["fillfactor=50"], "outcomes are written in place (HOT) on PostgreSQL"


def test_going_down_from_0008_writes_the_deliveries_of_batches_not_yet_claimed(store: Store) -> None:
    """A send frozen as lists of readers, one batch claimed: below 0008 every reader has their delivery, once."""
    from newsletter.store import deliveries as ops
    from newsletter.store.sends import queue

    add_readers(store, 25)
    now = utcnow()
    with store.begin() as conn:
        send_id = queue(conn, "say-what-you-mean", "Say what you mean", "<p>hi</p>", "hi", now)
        assert ops.freeze(conn, send_id, 10, now)
    with store.begin() as conn:
        claimed = ops.claim(conn, "scheduler-a", "outbox", now, skip_locked=False)
        assert isinstance(claimed, ops.Claimed) and len(claimed.rows) == 10
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0007")
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT id, subscriber_id, batch_number FROM deliveries ORDER BY id")).all()
        ranges = conn.execute(text("SELECT number, first_delivery, last_delivery FROM batches ORDER BY number")).all()
    assert sorted(row.subscriber_id for row in rows) == list(range(1, 26))
    assert [(row.id, row.batch_number) for row in rows] == [(ranges[0].first_delivery + n, n // 10) for n in range(25)]
    assert [(r.first_delivery, r.last_delivery) for r in ranges] == [(rows[0].id + 10 * n, rows[0].id + min(10 * n + 9, 24))
                                                                     for n in range(3)]
