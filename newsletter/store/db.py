"""Opening the store: the engine for any SQLAlchemy URL, migrated to the newest schema."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url

from ..config import Settings

if TYPE_CHECKING:
    import sqlite3

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0008"  # the newest migration; tests check it matches migrations/versions
WRITES = "newsletter_writes"  # execution option: this connection's transactions will write
BUSY_SECONDS = 30  # how long a SQLite writer waits for another's write lock before it gives up
IDLE_ENDED = "25P03"  # PostgreSQL ended a transaction left idle longer than its session allows


def describe_failure(exc: BaseException) -> str:
    """A database error in one line: the driver's own words, never the statement or
    its parameters (they hold addresses)."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    first = text.splitlines()[0] if text else ""
    if getattr(orig, "sqlstate", None) == IDLE_ENDED or "idle-in-transaction timeout" in first:
        return "the database ended a transaction this process had left open past its lease (was it paused?)"
    if "database is locked" in first:
        return (f"the database stayed locked by another process for {BUSY_SECONDS} s "
                "(a stopped or stuck scheduler, or a long import?)")
    return f"{type(orig).__name__}: {first}" if first else type(orig).__name__


def for_writing(conn: Connection) -> Connection:
    """Mark a connection, before its transaction begins, as one that writes: on
    SQLite its transactions then take the write lock at once (BEGIN IMMEDIATE).
    Every other transaction is a plain deferred BEGIN, so reads never wait for a writer."""
    return conn.execution_options(**{WRITES: True})


@dataclass
class Store:
    engine: Engine
    _idle_ms: int = field(default=0, repr=False)  # see end_idle_transactions

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextlib.contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction that writes: committed when the block ends, rolled back if it raises.
        On SQLite it takes the write lock at once (BEGIN IMMEDIATE), so two writers
        serialise instead of one failing to upgrade its read lock; the scheduler's
        claims rely on it (see scheduler.py)."""
        with self.engine.connect() as conn, for_writing(conn).begin():
            yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reading: on SQLite it never takes the write lock, so a
        long import or send does not stall the public app's pages."""
        with self.engine.connect() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()

    def end_idle_transactions(self, seconds: float) -> None:
        """On PostgreSQL, the server ends any transaction of this store's connections left
        idle `seconds` (the process paused, a frozen VM), and so its row locks: otherwise
        every other scheduler waits on them for as long as the pause. The paused process
        wakes to one line (see describe_failure). SQLite has no such bound: a paused writer
        keeps its lock, and the others give up after BUSY_SECONDS with one line."""
        milliseconds = max(1, round(seconds * 1000))
        if self.dialect != "postgresql" or milliseconds == self._idle_ms:
            return
        if not self._idle_ms:
            event.listen(self.engine, "connect", self._bound)
        self._idle_ms = milliseconds
        self.engine.dispose()  # connections opened before go: every new one is bound

    def _bound(self, dbapi_connection: Any, _record: object) -> None:
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True  # a SET outside any transaction holds for the session
        dbapi_connection.execute(f"SET idle_in_transaction_session_timeout = {self._idle_ms}")
        dbapi_connection.autocommit = autocommit


def normalise_url(url: str) -> str:
    """A plain postgresql:// URL means psycopg 3, the driver this project installs."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def create_database_engine(url: str) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": BUSY_SECONDS})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # Let SQLAlchemy's begin() below decide when a transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_SECONDS * 1000}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A writer takes the write lock at the start, so two schedulers serialise instead of
        # deadlocking; a reader begins deferred and never waits for a writer (WAL).
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITES) else "BEGIN")

    return engine


def current_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def migrate(engine: Engine) -> None:
    """Bring the schema to HEAD; a database already there costs one read, which waits for no writer."""
    with engine.connect() as conn:
        if current_revision(conn) == HEAD:
            return
    with engine.connect() as conn, for_writing(conn).begin():
        if engine.dialect.name == "postgresql":
            # Several schedulers may start at once: one migrates, the others wait.
            conn.execute(text("SELECT pg_advisory_xact_lock(727472)"))
        if current_revision(conn) == HEAD:
            return
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def open_store(settings: Settings) -> Store:
    """The store named by the settings, created and migrated on first use.

    The embedded default database gets its secret when it is made, so a secret
    file missing later is known to be lost (see tokens.load_secret)."""
    from ..tokens import load_secret, secret_file

    new_default = secret_file(settings) is not None and not Path(make_url(settings.resolved_database_url).database or "").exists()
    engine = create_database_engine(settings.resolved_database_url)
    migrate(engine)
    if new_default and not settings.secret:
        load_secret(settings)
    return Store(engine)
