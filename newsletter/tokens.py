"""Signed, personal unsubscribe links.

A token names a subscriber and an issue and is signed with NEWSLETTER_SECRET
(HMAC-SHA1 exactly as itsdangerous' default Signer makes it); older secrets in
NEWSLETTER_SECRET_FALLBACKS still verify. It never expires: an unsubscribe link must work for as long
as the email sits in someone's inbox.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from .config import ConfigError, Settings

SALT = "newsletter.unsubscribe"
# Each purpose signs with its own salt, hence its own key: a token made for one
# purpose never verifies for another (an unsubscribe token cannot confirm a signup).
CONFIRM_SALT = "newsletter.confirm"
FORM_SALT = "newsletter.form"


# The subscriber id a test copy's link names: no subscriber has it, so the link unsubscribes nobody.
TEST_COPY_SUBSCRIBER = 0


class BadToken(ValueError):
    """Forged, tampered with, or signed with another secret."""


@dataclass(frozen=True)
class UnsubscribeToken:
    subscriber_id: int
    issue: str


def secret_file(settings: Settings) -> Path | None:
    """Where the embedded default keeps its secret: beside its SQLite database.
    None for a database the user chose, which other machines may share."""
    if settings.database_url:
        return None
    return _default_secret_file(settings)


def _default_secret_file(settings: Settings) -> Path:
    return settings.data_path / "secret"


def load_secret(settings: Settings) -> str:
    """NEWSLETTER_SECRET; or, on the embedded default database, a random secret made
    on first use and kept beside it (never in git). Any other database needs NEWSLETTER_SECRET.

    A missing secret file beside a database that already has subscribers or
    sends is an error, never a new secret: every link already sent was signed
    with the old one.
    """
    if settings.secret:
        return settings.secret
    path = secret_file(settings)
    if path is None:
        earlier = _default_secret_file(settings)
        if _read_secret(earlier, quiet=True):  # the list was moved here from the default database
            raise ConfigError(
                f"NEWSLETTER_SECRET is not set. This newsletter has a secret from its default database in {earlier}, "
                "and every unsubscribe link already sent was signed with it: set NEWSLETTER_SECRET to that "
                f"secret (export NEWSLETTER_SECRET=\"$(cat {earlier})\"), the same on every machine that sends "
                "or serves this newsletter, so those links keep working"
            )
        raise ConfigError(
            "NEWSLETTER_SECRET is not set. Unsubscribe links are signed with it, and only the embedded "
            "default database keeps a secret of its own: with NEWSLETTER_DATABASE_URL set, set "
            "NEWSLETTER_SECRET to a long random string, the same on every machine that sends or serves "
            "this newsletter"
        )
    found = _read_secret(path)
    if found:
        return found
    database = Path(make_url(settings.resolved_database_url).database or "")
    _refuse_lost_secret(path, database, empty=path.exists())
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole under another name, then linked into place: the secret file
    # exists complete or not at all, and of two processes making one, one wins.
    tmp = path.with_name(f".secret.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_urlsafe(32))
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            if path.exists() and not _read_secret(path):  # an empty one, on an empty database: replaced
                path.unlink()
            os.link(tmp, path)
    finally:
        tmp.unlink()
    found = _read_secret(path)
    if not found:
        raise ConfigError(f"{path} could not be written with a new secret; check the folder's permissions and free space")
    return found


def _read_secret(path: Path, *, quiet: bool = False) -> str:
    """The secret kept in `path`, or "" when there is none (a missing or empty file)."""
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        if quiet:
            return ""
        raise ConfigError(f"{path} cannot be read as the secret ({exc}); restore it from a backup") from None


def _refuse_lost_secret(path: Path, database: Path, *, empty: bool = False) -> None:
    """ConfigError when `database` already has subscribers or sends: their links need the lost secret.
    `empty`: the file is there but holds nothing (cut short, or emptied by hand)."""
    if not database.exists():
        return
    import sqlite3

    found: dict[str, int] = {}
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table in ("subscribers", "sends"):
            if table in tables:
                found[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # fixed table names, nothing from outside
    if not any(found.values()):
        return
    held = " and ".join(f"{n} {table if n != 1 else table.removesuffix('s')}" for table, n in found.items() if n)
    raise ConfigError(
        f"{path} is {'empty' if empty else 'missing'}, but {database} already holds {held}: every unsubscribe link already sent "
        "was signed with that secret, and a new one would break them all. Restore the file from a backup, "
        "or set NEWSLETTER_SECRET to the old secret. Only if it is lost for good (or no issue was ever sent), "
        f"make a new one: python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > {path} "
        "(links already sent will then stop working)"
    )


def fallback_secrets(settings: Settings) -> list[str]:
    """NEWSLETTER_SECRET_FALLBACKS: older secrets, comma-separated, that still verify links."""
    return [old.strip() for old in settings.secret_fallbacks.split(",") if old.strip()]


def derive_key(secret: str, salt: str = SALT) -> bytes:
    """The HMAC key for a secret: SHA-1 of salt + "signer" + secret.

    This is itsdangerous' documented default ("django-concat" derivation), so
    every link signed since the first release keeps its signature. A test
    checks it against itsdangerous' own Signer and a fixed vector.
    """
    return hashlib.sha1(salt.encode() + b"signer" + secret.encode("utf-8")).digest()


def _signature(key: bytes, value: bytes) -> bytes:
    # HMAC-SHA1, base64url without padding: the signature itsdangerous writes.
    return base64.urlsafe_b64encode(hmac.digest(key, value, "sha1")).rstrip(b"=")


class Signer:
    """Makes and checks tokens: "<subscriber id>:<issue slug>.<signature>".

    New tokens are signed with `secret` only; `fallbacks` (older secrets,
    NEWSLETTER_SECRET_FALLBACKS) still verify links already sent. Ids and
    slugs are URL-safe already, so the token needs no encoding. The scheduler
    makes one per recipient, so the keys are derived once and each token costs
    one HMAC on OpenSSL's fast path.
    """

    def __init__(self, secret: str, fallbacks: Sequence[str] = (), salt: str = SALT):
        self._key = derive_key(secret, salt)
        self._keys = [self._key, *(derive_key(old, salt) for old in fallbacks if old)]

    def sign(self, value: str) -> str:
        """`value` (URL-safe ASCII) with its signature: "<value>.<signature>"."""
        data = value.encode("ascii")
        return (data + b"." + _signature(self._key, data)).decode("ascii")

    def unsign(self, token: str) -> str:
        """The value a token carries, or BadToken when it was not signed by us for this purpose."""
        try:
            value, _, signature = token.encode("ascii").rpartition(b".")
        except UnicodeError:
            raise BadToken("the link is not valid") from None
        if not value or not any(hmac.compare_digest(_signature(key, value), signature) for key in self._keys):
            raise BadToken("the link is not valid")
        return value.decode("ascii")

    def token(self, subscriber_id: int, issue: str) -> str:
        return self.sign(f"{subscriber_id}:{issue}")

    def verify(self, token: str) -> UnsubscribeToken:
        number, _, issue = self.unsign(token).partition(":")
        if not number.isdigit() or not issue:
            raise BadToken("the unsubscribe link is not valid")
        return UnsubscribeToken(subscriber_id=int(number), issue=issue)


def unsubscribe_url(settings: Settings, token: str) -> str:
    # Tokens hold only URL-safe characters (digits, slug characters, ':', '.', base64url), so no quoting.
    return f"{settings.site_url}/unsubscribe?token={token}"
