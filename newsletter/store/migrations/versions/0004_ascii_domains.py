"""Addresses with an internationalised domain are stored and keyed in its ASCII (xn--) form.

Earlier versions keyed ada@bücher.example by its Unicode domain; import and add
now key it as ada@xn--bcher-kva.example. Without this re-keying, an old
suppressed row and a new import of the same address would be two people, and
the new one would be mailed. Only subscriber rows change.

Revision ID: 0004
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from email_validator import EmailNotValidError, validate_email

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None

subscribers = sa.table("subscribers", sa.column("id", sa.Integer), sa.column("email", sa.String), sa.column("email_key", sa.String))


def upgrade() -> None:
    conn = op.get_bind()
    changes = []
    for row in conn.execute(sa.select(subscribers.c.id, subscribers.c.email, subscribers.c.email_key)):
        if row.email_key.isascii():
            continue
        try:
            checked = validate_email(row.email, check_deliverability=False, allow_smtputf8=False)
        except EmailNotValidError:
            continue  # non-ASCII before the @: kept as it was (import and add refuse such addresses now)
        if checked.ascii_email:
            changes.append({"row_id": row.id, "email": checked.ascii_email, "email_key": checked.ascii_email.casefold()})
    if changes:
        conn.execute(
            subscribers.update().where(subscribers.c.id == sa.bindparam("row_id"))
            .values(email=sa.bindparam("email"), email_key=sa.bindparam("email_key")),
            changes,
        )


def downgrade() -> None:
    pass  # the ASCII form is the same address; nothing to undo
