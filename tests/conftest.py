"""Shared fixtures and helpers: a fresh copy of the sample project, settings that point
at it, stores on SQLite and PostgreSQL, servers to send to; and the helpers tests share.
A test module imports helpers from here (or from the helper modules beside it), never
from another test module."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from newsletter.config import Settings, load_settings
from newsletter.store import Store

if TYPE_CHECKING:
    from click.testing import Result

    from newsletter.providers import Provider
    from newsletter.scheduler import Scheduler
    from newsletter.store.sends import SendSummary

    from .sendgrid_server import SendGridServer
    from .smtp_server import SmtpServer

REPO = Path(__file__).resolve().parent.parent
NEWEST = "2017-03-06-happy-families-lets-talk-about-new-labour"  # the sample's newest issue
SECRET = "test-secret-for-signing-links"  # NEWSLETTER_SECRET of store_settings
SHARED = REPO.parent / "shared"
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the sample newsletter (essays, settings; packaged templates) in a temporary folder,
    made the working folder, with no NEWSLETTER_* or SendGrid variables leaking in."""
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_") or name.startswith("SENDGRID_"):
            monkeypatch.delenv(name)
    root = tmp_path / "project"
    root.mkdir()
    shutil.copytree(REPO / "issues", root / "issues")
    shutil.copy(REPO / "newsletter.toml", root / "newsletter.toml")
    if (REPO / "subscribers").is_dir():
        shutil.copytree(REPO / "subscribers", root / "subscribers")
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def settings(project: Path) -> Settings:
    return load_settings(project, environ={})


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium driven by playwright (playwright cannot fetch its own browser here)."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); tests/run.sh installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(POSTGRES_ADMIN_URL)
    try:
        conn = psycopg.connect(
            host=admin.host, port=admin.port or 5432, user=admin.username, dbname=admin.database,
            autocommit=True, connect_timeout=3,
        )
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable at {admin.host}:{admin.port or 5432} ({exc.__class__.__name__})")
    name = f"newsletter_test_{uuid.uuid4().hex[:12]}"
    conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, project: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{project / '.newsletter' / 'newsletter.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store_settings(settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings on each database in turn; the CLI sees the same through the environment."""
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", database_url)
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    return dataclasses.replace(settings, database_url=database_url, secret=SECRET)


@pytest.fixture
def store(store_settings: Settings) -> Iterator[Store]:
    from newsletter.store import open_store

    opened = open_store(store_settings)
    yield opened
    opened.dispose()


@pytest.fixture
def sendgrid_server() -> Iterator[SendGridServer]:
    from .sendgrid_server import SendGridServer

    server = SendGridServer().start()
    yield server
    server.stop()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    from .smtp_server import SmtpServer

    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def newsletter_with_list(store_settings: Settings, store: Store) -> Settings:
    """The sample newsletter built, with the sample list imported: ready to send."""
    from newsletter.build import build
    from newsletter.store.csvio import import_csv

    assert build(store_settings).ok
    import_csv(store, store_settings.root / "subscribers" / "sample.csv")
    return store_settings


class FreshStore:
    """The sample newsletter built and its list imported into a fresh database (SQLite, then
    PostgreSQL): sends and batches driven through the library, without the command line."""

    def __init__(self, settings: Settings, store: Store):
        self.settings = settings
        self.store = store

    def queue(self, issue: str = NEWEST, *, at: dt.datetime | None = None, again: bool = False) -> int:
        """Queue the built issue, due now unless `at` (naive UTC); returns the send's number."""
        from newsletter.build import ready_issue
        from newsletter.sends import queue
        from newsletter.store.schema import utcnow

        essay, built = ready_issue(self.settings, issue)
        with self.store.begin() as conn:
            return queue(conn, essay.slug, built.subject, built.html, built.text, at or utcnow(), again=again)

    def scheduler(self, provider: Provider | None = None, **changes: Any) -> Scheduler:
        """A scheduler on this store, with these settings changed (batch_size=5), through `provider`
        (by default the one the settings name)."""
        from newsletter.providers import get_provider
        from newsletter.scheduler import Scheduler

        settings = dataclasses.replace(self.settings, **changes)
        return Scheduler(self.store, settings, provider or get_provider(settings), SECRET)

    def summaries(self) -> list[SendSummary]:
        """Every send, newest first, with its deliveries counted by status."""
        from newsletter.sends import summaries

        with self.store.engine.connect() as conn:
            return summaries(conn)

    def add_readers(self, count: int, start: int = 0) -> None:
        add_readers(self.store, count, start)

    def active_emails(self) -> set[str]:
        return active_emails(self.store)


@pytest.fixture
def fresh_store(newsletter_with_list: Settings, store: Store) -> FreshStore:
    return FreshStore(newsletter_with_list, store)


def run(*args: str, input: str | None = None) -> Result:
    """The command line, in this process: `newsletter ARGS`."""
    from click.testing import CliRunner

    from newsletter.cli import cli

    return CliRunner().invoke(cli, list(args), input=input)


def queue_now(issue: str = NEWEST, *extra: str) -> Result:
    """`newsletter queue ISSUE --at now --yes`, which must succeed."""
    result = run("queue", issue, "--at", "now", "--yes", *extra)
    assert result.exit_code == 0, result.output
    return result


def active_emails(store: Store) -> set[str]:
    from newsletter.store import subscribers as ops

    with store.engine.connect() as conn:
        return {s.email for s in ops.iter_subscribers(conn, ("active",))}


def add_readers(store: Store, count: int, start: int = 0) -> None:
    """`count` more active subscribers, reader<n>@example.net, added in one statement."""
    from sqlalchemy import insert

    from newsletter.store.schema import subscribers, utcnow

    now = utcnow()
    with store.begin() as conn:
        conn.execute(insert(subscribers), [
            dict(email=f"reader{n}@example.net", email_key=f"reader{n}@example.net", name="", attributes={},
                 status="active", source="test", created_at=now, updated_at=now, status_changed_at=now)
            for n in range(start, start + count)
        ])


def write_csv(path: Path, text: str, encoding: str = "utf-8") -> Path:
    """A CSV file with exactly these bytes (after encoding), for import tests."""
    path.write_bytes(text.encode(encoding))
    return path


def statuses_in(store: Store) -> dict[str, str]:
    """Every subscriber's stored address → status."""
    from newsletter.store import subscribers as ops

    with store.engine.connect() as conn:
        return {s.email: s.status for s in ops.iter_subscribers(conn)}


def sendgrid_signed(key, body: bytes) -> dict[str, str]:  # an ec.EllipticCurvePrivateKey
    """Headers that sign `body` for SendGrid's Event Webhook with `key`, as SendGrid does."""
    import base64
    import time

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    stamp = str(int(time.time()))
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp, "Content-Type": "application/json"}


def sendgrid_public_key(key) -> str:
    """The key as SendGrid shows it in its settings: base64 of the DER public key."""
    import base64

    from cryptography.hazmat.primitives import serialization

    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def override_template(settings: Settings, name: str) -> Path:
    """Copy a packaged template into the newsletter's own templates/, as a writer overriding it would."""
    from newsletter.render import PACKAGED_TEMPLATES

    settings.templates_path.mkdir(exist_ok=True)
    target = settings.templates_path / name
    shutil.copy(PACKAGED_TEMPLATES / name, target)
    return target


def sent_one_by_one(settings: Settings) -> list:
    """Every message sent outside a send (confirmations, notices, welcomes), oldest first, parsed."""
    import email
    import email.policy

    return [email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            for path in sorted(settings.outbox_path.glob("test/*.eml"))]


def form_started(settings: Settings, seconds_ago: float) -> str:
    """The signed start time a signup form carries, as if shown `seconds_ago`."""
    import time

    from newsletter.signup import Signups

    return Signups(settings, None, settings.secret).form_token(time.time() - seconds_ago)


ESSAYS = Path(__file__).parent / "essays"
HARD_SLUG = "2017-03-13-the-hard-one"


def write_image(path: Path, width: int, height: int, fmt: str = "PNG") -> Path:
    """A real image file of this size: stripes, so scaling it changes its bytes."""
    from PIL import Image, ImageDraw

    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (width, height), (240, 236, 228))
    draw = ImageDraw.Draw(image)
    for x in range(0, width, 40):
        draw.rectangle([x, 0, x + 19, height], fill=(155, 61, 46))
    image.save(path, fmt)
    return path


@pytest.fixture
def hard_essay(settings: Settings) -> Settings:
    """The sample newsletter plus tests/essays' hard essay: a long URL, a long word, code,
    a wide table, footnotes and a 2400 px image beside it."""
    shutil.copy(ESSAYS / f"{HARD_SLUG}.md", settings.issues_path / f"{HARD_SLUG}.md")
    write_image(settings.issues_path / "img" / "count.png", 2400, 1200)
    return settings


def write_essay(settings: Settings, name: str, front: str, body: str) -> Path:
    """issues/<name>.md with this front matter (without the --- lines) and body."""
    path = settings.issues_path / f"{name}.md"
    path.write_text(f"---\n{front.strip()}\n---\n\n{body.strip()}\n", encoding="utf-8")
    return path
