"""The migrations and schema.py describe the same database, on every dialect we support."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from newsletter.store.db import create_database_engine, migrate
from newsletter.store.schema import metadata


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
