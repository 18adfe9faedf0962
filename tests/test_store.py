"""The store opens anywhere, keeps rows across upgrades, and signs links no one can forge."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import insert, select, text

from newsletter.config import ConfigError, Settings
from newsletter.store import open_store
from newsletter.store.db import HEAD, MIGRATIONS, create_database_engine
from newsletter.store.schema import subscribers, utcnow
from newsletter.tokens import BadToken, Signer, load_secret, secret_file, unsubscribe_url


def test_head_is_the_newest_migration() -> None:
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_heads() == [HEAD]


def test_migration_of_an_existing_database_keeps_every_row(database_url: str) -> None:
    engine = create_database_engine(database_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
    now = utcnow()
    rows = [
        dict(email=f"Reader{n}@Example.com", email_key=f"reader{n}@example.com", name=f"Reader {n}", attributes={"n": n},
             status="unsubscribed" if n % 3 == 0 else "active", source="old version", created_at=now, updated_at=now,
             status_changed_at=now)
        for n in range(50)
    ]
    with engine.begin() as conn:
        conn.execute(insert(subscribers), rows)
    engine.dispose()

    store = open_store(Settings(root=Path("."), database_url=database_url))
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
        kept = conn.execute(select(subscribers.c.email, subscribers.c.status, subscribers.c.attributes).order_by(subscribers.c.id)).all()
    store.dispose()
    assert [(r.email, r.status, r.attributes) for r in kept] == [(r["email"], r["status"], r["attributes"]) for r in rows]


def test_a_plain_postgresql_url_works_as_given(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql://")
    store = open_store(Settings(root=Path("."), database_url=postgres_url))
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    store.dispose()


def test_tokens_verify_and_forgeries_are_refused() -> None:
    signer = Signer("secret-one")
    token = signer.token(42, "2017-02-13-say-what-you-mean")
    assert signer.verify(token).subscriber_id == 42
    with pytest.raises(BadToken):
        Signer("secret-two").verify(token)
    body, signature = token.rsplit(".", 1)
    other = Signer("secret-one").token(43, "2017-02-13-say-what-you-mean").rsplit(".", 1)[0]
    with pytest.raises(BadToken):
        signer.verify(f"{other}.{signature}")  # someone else's id under this signature
    with pytest.raises(BadToken):
        signer.verify(body + "." + signature[::-1])
    with pytest.raises(BadToken):
        signer.verify("not-a-token")


def test_unsubscribe_url_lives_under_the_base_url(settings: Settings) -> None:
    settings = dataclasses.replace(settings, base_url="https://news.example.org/")
    url = unsubscribe_url(settings, Signer("s").token(1, "x"))
    assert url.startswith("https://news.example.org/unsubscribe?token=")


def test_default_secret_is_made_once_beside_the_database_and_ignored_by_git(settings: Settings, project: Path) -> None:
    first = load_secret(settings)
    assert len(first) >= 32 and load_secret(settings) == first
    path = secret_file(settings)
    assert path.parent == project / ".newsletter" and path.stat().st_mode & 0o077 == 0
    repo = Path(__file__).resolve().parent.parent
    ignored = subprocess.run(["git", "check-ignore", "-q", ".newsletter/secret"], cwd=repo, check=False)
    assert ignored.returncode == 0, ".newsletter/ must be ignored by git"


@pytest.mark.parametrize("url", ["postgresql://postgres@127.0.0.1:5432/test", "sqlite:///elsewhere.db"])
def test_a_non_default_database_without_a_secret_is_a_clear_error(settings: Settings, url: str) -> None:
    settings = dataclasses.replace(settings, database_url=url, secret="")
    with pytest.raises(ConfigError, match="NEWSLETTER_SECRET is not set"):
        load_secret(settings)
    assert load_secret(dataclasses.replace(settings, secret="from-the-environment")) == "from-the-environment"
