"""One outcome per delivery: deferred retries, batches that wait, schedulers that hold a lease.

Batches that were in doubt or failed as a whole hand their outcome to their
deliveries still pending (in doubt, or failed with the batch's error) and are
done; `newsletter sends SEND` then shows who missed out.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

batches = sa.table("batches", sa.column("send_id", sa.Integer), sa.column("number", sa.Integer),
                   sa.column("status", sa.String), sa.column("error", sa.Text))
deliveries = sa.table("deliveries", sa.column("send_id", sa.Integer), sa.column("batch_number", sa.Integer),
                      sa.column("status", sa.String), sa.column("error", sa.Text))


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as table:
        table.add_column(sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))
        table.add_column(sa.Column("deferred_since", sa.DateTime))
        table.add_column(sa.Column("next_attempt_at", sa.DateTime))
    with op.batch_alter_table("deliveries") as table:
        table.alter_column("attempts", server_default=None)
    with op.batch_alter_table("batches") as table:
        table.add_column(sa.Column("not_before", sa.DateTime))
    # Liveness was a pid and a heartbeat; it is a lease now. The rows are only ever about running processes.
    op.drop_table("schedulers")
    op.create_table(
        "schedulers",
        sa.Column("id", sa.String(120), primary_key=True),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("heartbeat_at", sa.DateTime, nullable=False),
        sa.Column("lease_until", sa.DateTime, nullable=False),
    )
    conn = op.get_bind()
    for old, outcome in (("in_doubt", "in_doubt"), ("failed", "failed")):
        for batch in conn.execute(sa.select(batches.c.send_id, batches.c.number, batches.c.error).where(batches.c.status == old)):
            conn.execute(sa.update(deliveries).where(
                deliveries.c.send_id == batch.send_id, deliveries.c.batch_number == batch.number,
                deliveries.c.status == "pending").values(status=outcome, error=batch.error))
        conn.execute(sa.update(batches).where(batches.c.status == old).values(status="done"))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as table:
        table.drop_column("next_attempt_at")
        table.drop_column("deferred_since")
        table.drop_column("attempts")
    with op.batch_alter_table("batches") as table:
        table.drop_column("not_before")
    with op.batch_alter_table("schedulers") as table:
        table.drop_column("lease_until")
