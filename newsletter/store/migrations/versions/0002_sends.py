"""Sends, their batches and per-recipient deliveries; schedulers; webhook events seen.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sends",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("issue_slug", sa.String(200), nullable=False, index=True),
        sa.Column("subject", sa.String(500), nullable=False),
        sa.Column("html", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("scheduled_at", sa.DateTime, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("started_at", sa.DateTime),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("last_progress_at", sa.DateTime),
        sa.Column("late_ok", sa.Boolean, nullable=False),
        sa.Column("note", sa.String(500), nullable=False),
    )
    op.create_table(
        "batches",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("send_id", sa.Integer, sa.ForeignKey("sends.id"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("provider", sa.String(20)),
        sa.Column("claimed_by", sa.String(120)),
        sa.Column("claimed_at", sa.DateTime),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("error", sa.Text),
        sa.UniqueConstraint("send_id", "number"),
    )
    op.create_index("ix_batches_status", "batches", ["status", "send_id"])
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("send_id", sa.Integer, sa.ForeignKey("sends.id"), nullable=False),
        sa.Column("batch_number", sa.Integer, nullable=False),
        sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("sent_at", sa.DateTime),
        sa.Column("error", sa.Text),
        sa.UniqueConstraint("send_id", "subscriber_id"),
    )
    op.create_index("ix_deliveries_batch", "deliveries", ["send_id", "batch_number"])
    op.create_table(
        "schedulers",
        sa.Column("id", sa.String(120), primary_key=True),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("heartbeat_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "webhook_events",
        sa.Column("sg_event_id", sa.String(200), primary_key=True),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("received_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    for table in ("webhook_events", "schedulers", "deliveries", "batches", "sends"):
        op.drop_table(table)
