"""Signups through the form: each accepted request, its confirmation and the consent it records.

The new subscriber status "pending" needs no schema change (status is a string).

Revision ID: 0006
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signups",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("requested_at", sa.DateTime, nullable=False),
        sa.Column("form", sa.String(200), nullable=False),
        sa.Column("requested_ip", sa.String(64), nullable=False),
        sa.Column("confirmed_at", sa.DateTime),
        sa.Column("confirmed_ip", sa.String(64)),
    )
    op.create_index("ix_signups_subscriber_id", "signups", ["subscriber_id"])
    op.create_index("ix_signups_ip", "signups", ["requested_ip", "requested_at"])


def downgrade() -> None:
    op.drop_table("signups")
