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
    UniqueConstraint("send_id", "number"),
    Index("ix_batches_status", "status", "send_id"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("send_id", Integer, ForeignKey("sends.id"), nullable=False),
    Column("batch_number", Integer, nullable=False),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), nullable=False),
    Column("status", String(16), nullable=False),  # a DeliveryStatus
    Column("sent_at", DateTime),
    Column("error", Text),  # the server's answer, or why it could not be sent
    Column("attempts", Integer, nullable=False, default=0),  # temporary refusals so far
    Column("deferred_since", DateTime),  # first temporary refusal: retries stop retry_for_hours later
    Column("next_attempt_at", DateTime),
    UniqueConstraint("send_id", "subscriber_id"),
    Index("ix_deliveries_batch", "send_id", "batch_number"),
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
