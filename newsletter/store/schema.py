"""The tables. Changes to them go through a new Alembic migration in migrations/versions/."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from ..statuses import (
    SubscriberStatus,
    ACTIVE,
    PENDING,
    UNSUBSCRIBED,
    BOUNCED,
    COMPLAINED,
    STATUSES,
    SUPPRESSED,
    SendStatus,
    BatchStatus,
    DeliveryStatus,
    UNSETTLED,
    NEEDS_EDITOR,
)

# The statuses are re-exported: the schema's columns hold them, and the store imports them from here.
__all__ = [
    "ACTIVE",
    "BOUNCED",
    "COMPLAINED",
    "NEEDS_EDITOR",
    "PENDING",
    "STATUSES",
    "SUPPRESSED",
    "UNSETTLED",
    "UNSUBSCRIBED",
    "BatchStatus",
    "DeliveryStatus",
    "SendStatus",
    "SubscriberStatus",
    "batches",
    "deliveries",
    "metadata",
    "schedulers",
    "sends",
    "signups",
    "subscriber_events",
    "subscribers",
    "utcnow",
    "webhook_events",
]

metadata = MetaData()


def utcnow() -> dt.datetime:
    """Now in UTC, without tzinfo: every timestamp in the store is naive UTC."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False),  # as the subscriber gave it
    Column("email_key", String(320), nullable=False, unique=True),  # normalised: one person, one row
    Column("name", String(200), nullable=False, default=""),
    Column("attributes", JSON, nullable=False, default=dict),
    Column("status", String(16), nullable=False, default=ACTIVE),
    Column("source", String(200), nullable=False, default=""),  # where the last status change came from
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("status_changed_at", DateTime, nullable=False),
)

# Every status a subscriber ever had, and why: suppressions are never lost.
subscriber_events = Table(
    "subscriber_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), nullable=False, index=True),
    Column("at", DateTime, nullable=False),
    Column("status", String(16), nullable=False),
    Column("source", String(200), nullable=False),
)

# Each signup request the form accepted: one row per email it sent ("confirm" or,
# for an address already active, "notice"). A confirmed row is the consent record:
# when, from which form, from which (truncated) IP. Rate limits count these rows.
signups = Table(
    "signups",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # confirm, notice
    Column("requested_at", DateTime, nullable=False),
    Column("form", String(200), nullable=False),  # where the form was: the page, or another site's origin
    Column("requested_ip", String(64), nullable=False),  # truncated: /24 for IPv4, /48 for IPv6
    Column("confirmed_at", DateTime),
    Column("confirmed_ip", String(64)),
    Index("ix_signups_ip", "requested_ip", "requested_at"),
)

sends = Table(
    "sends",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("issue_slug", String(200), nullable=False, index=True),
    Column("subject", String(500), nullable=False),
    Column("html", Text, nullable=False),  # the built issue, frozen when queued
    Column("text", Text, nullable=False),
    Column("status", String(16), nullable=False),  # a SendStatus
    Column("scheduled_at", DateTime, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("started_at", DateTime),
    Column("finished_at", DateTime),
    Column("last_progress_at", DateTime),
    Column("late_ok", Boolean, nullable=False, default=False),
    Column("note", String(500), nullable=False, default=""),
)

batches = Table(
    "batches",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("send_id", Integer, ForeignKey("sends.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # a BatchStatus
    Column("provider", String(20)),
    Column("not_before", DateTime),  # a batch with deferred deliveries waits until then
    Column("claimed_by", String(120)),
    Column("claimed_at", DateTime),
    Column("finished_at", DateTime),
    Column("error", Text),
    # The batch's deliveries are the ids first_delivery..last_delivery (a freeze numbers them in a row):
    # a batch is found through the primary key, with no index of its own on a million-row table.
    Column("first_delivery", Integer, nullable=False),
    Column("last_delivery", Integer, nullable=False),
    # The ids of the readers frozen into this batch, comma-separated, until a claim writes their deliveries
    # (store.deliveries.materialise): a freeze of a million writes a thousand rows, not a million.
    Column("members", Text),
    UniqueConstraint("send_id", "number"),
    Index("ix_batches_status", "status", "send_id", "number"),  # the next claimable batch, in order
)

# One row per recipient of a send, written a million at a time by a freeze. No foreign keys: checking
# two per row was most of a freeze's time, and they guard nothing the code can do. A freeze takes
# its rows from subscribers in the same statement, for a send whose row it has just locked, and
# neither subscribers nor sends are ever deleted (a suppression must outlive everything).
# On PostgreSQL the table keeps half of each page free (fillfactor 50, set by migration 0007), so an
# outcome is written in place; it stays so only while no index holds status, sent_at or error.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("send_id", Integer, nullable=False),  # sends.id
    Column("batch_number", Integer, nullable=False),
    Column("subscriber_id", Integer, nullable=False),  # subscribers.id
    Column("status", String(16), nullable=False),  # a DeliveryStatus
    Column("sent_at", DateTime),
    Column("error", Text),  # the server's answer, or why it could not be sent
    Column("attempts", Integer, nullable=False, default=0),  # temporary refusals so far
    Column("deferred_since", DateTime),  # first temporary refusal: retries stop retry_for_hours later
    Column("next_attempt_at", DateTime),
    UniqueConstraint("send_id", "subscriber_id"),  # one delivery per reader; also how a send's deliveries are found
)

schedulers = Table(
    "schedulers",
    metadata,
    Column("id", String(120), primary_key=True),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("heartbeat_at", DateTime, nullable=False),
    Column("lease_until", DateTime, nullable=False),  # its claims are its own until then; renewed while alive
)

webhook_events = Table(
    "webhook_events",
    metadata,
    Column("sg_event_id", String(200), primary_key=True),
    Column("event", String(40), nullable=False),
    Column("received_at", DateTime, nullable=False),
)
