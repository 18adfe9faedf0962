"""A freeze lists each batch's readers; a claim writes the batch's deliveries.

Writing a million delivery rows took a freeze several seconds, while the send
stood still. A freeze now keeps, per batch, the ids of the readers it froze
(batches.members, comma-separated) and numbers their deliveries as before; the
claim that first takes the batch writes those deliveries and clears the list.
Batches frozen before this migration already have their deliveries (members NULL).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as table:
        table.add_column(sa.Column("members", sa.Text))


def downgrade() -> None:
    # A batch not yet claimed still lists its readers: write their deliveries first, as a claim would.
    from newsletter.store.deliveries import materialise_pending

    materialise_pending(op.get_bind())
    with op.batch_alter_table("batches") as table:
        table.drop_column("members")
