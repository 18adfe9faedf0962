"""A million readers: deliveries without foreign keys, batches found by a range of delivery ids.

A freeze writes one delivery per reader in one statement; the two foreign-key
checks per row were most of its time, and the batch index on deliveries another
part. Deliveries are now numbered in a row by their freeze, so each batch names
its first and last delivery and is read through the primary key. The batch index
gains the batch number, so the next claimable batch is the first in it. On
PostgreSQL, a freeze leaves half of each page of deliveries free, so recording an
outcome rewrites the row in place (a HOT update) instead of adding an entry to
every index.

Existing batches get the range their deliveries span (older freezes could
interleave ids; the queries still check send and batch number, so a wider range
is only slower, never wrong).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# SQLite's foreign keys have no names: name them to drop them (alembic's batch mode recreates the table).
NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}

batches = sa.table("batches", sa.column("send_id", sa.Integer), sa.column("number", sa.Integer),
                   sa.column("first_delivery", sa.Integer), sa.column("last_delivery", sa.Integer))
deliveries = sa.table("deliveries", sa.column("id", sa.Integer), sa.column("send_id", sa.Integer),
                      sa.column("batch_number", sa.Integer))


def upgrade() -> None:
    with op.batch_alter_table("batches") as table:
        table.add_column(sa.Column("first_delivery", sa.Integer))
        table.add_column(sa.Column("last_delivery", sa.Integer))
    mine = sa.and_(deliveries.c.send_id == batches.c.send_id, deliveries.c.batch_number == batches.c.number)
    op.get_bind().execute(sa.update(batches).values(
        first_delivery=sa.select(sa.func.coalesce(sa.func.min(deliveries.c.id), 1)).where(mine).scalar_subquery(),
        last_delivery=sa.select(sa.func.coalesce(sa.func.max(deliveries.c.id), 0)).where(mine).scalar_subquery(),
    ))
    with op.batch_alter_table("batches") as table:
        table.alter_column("first_delivery", existing_type=sa.Integer, nullable=False)
        table.alter_column("last_delivery", existing_type=sa.Integer, nullable=False)
        table.drop_index("ix_batches_status")
        table.create_index("ix_batches_status", ["status", "send_id", "number"])
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("deliveries_send_id_fkey", "deliveries", type_="foreignkey")
        op.drop_constraint("deliveries_subscriber_id_fkey", "deliveries", type_="foreignkey")
        op.drop_index("ix_deliveries_batch", "deliveries")
        op.execute("ALTER TABLE deliveries SET (fillfactor = 50)")
    else:
        with op.batch_alter_table("deliveries", naming_convention=NAMING) as table:
            table.drop_constraint("fk_deliveries_send_id_sends", type_="foreignkey")
            table.drop_constraint("fk_deliveries_subscriber_id_subscribers", type_="foreignkey")
            table.drop_index("ix_deliveries_batch")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE deliveries RESET (fillfactor)")
        op.create_index("ix_deliveries_batch", "deliveries", ["send_id", "batch_number"])
        op.create_foreign_key("deliveries_send_id_fkey", "deliveries", "sends", ["send_id"], ["id"])
        op.create_foreign_key("deliveries_subscriber_id_fkey", "deliveries", "subscribers", ["subscriber_id"], ["id"])
    else:
        with op.batch_alter_table("deliveries", naming_convention=NAMING) as table:
            table.create_index("ix_deliveries_batch", ["send_id", "batch_number"])
            table.create_foreign_key("fk_deliveries_send_id_sends", "sends", ["send_id"], ["id"])
            table.create_foreign_key("fk_deliveries_subscriber_id_subscribers", "subscribers", ["subscriber_id"], ["id"])
    with op.batch_alter_table("batches") as table:
        table.drop_index("ix_batches_status")
        table.create_index("ix_batches_status", ["status", "send_id"])
        table.drop_column("last_delivery")
        table.drop_column("first_delivery")
