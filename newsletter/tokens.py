"""Signed, personal unsubscribe links.

A token names a subscriber and an issue and is signed with NEWSLETTER_SECRET
(itsdangerous). It never expires: an unsubscribe link must work for as long
as the email sits in someone's inbox.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature
from itsdangerous import Signer as ItsdangerousSigner
from sqlalchemy.engine import make_url

from .config import ConfigError, Settings

SALT = "newsletter.unsubscribe"


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
    return Path(make_url(settings.resolved_database_url).database or "").with_name("secret")


def load_secret(settings: Settings) -> str:
    """NEWSLETTER_SECRET; or, on the embedded default database, a random secret made
    on first use and kept beside it (never in git). Any other database needs NEWSLETTER_SECRET."""
    if settings.secret:
        return settings.secret
    path = secret_file(settings)
    if path is None:
        raise ConfigError(
            "NEWSLETTER_SECRET is not set. Unsubscribe links are signed with it, and only the embedded "
            "default database keeps a secret of its own: with NEWSLETTER_DATABASE_URL set, set "
            "NEWSLETTER_SECRET to a long random string, the same on every machine that sends or serves "
            "this newsletter"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secrets.token_urlsafe(32))
    return path.read_text(encoding="ascii").strip()


class _KeyOnceSigner(ItsdangerousSigner):
    """itsdangerous' Signer, deriving its key once instead of once per signature."""

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        if secret_key is not None:
            return super().derive_key(secret_key)
        if not hasattr(self, "_derived"):
            self._derived = super().derive_key()
        return self._derived


class Signer:
    """Makes and checks tokens: "<subscriber id>:<issue slug>" signed by itsdangerous.

    Ids and slugs are URL-safe already, so the token needs no encoding. The
    scheduler makes one per recipient, so the key is derived once, and SHA-1
    is handed to hmac as hashlib's own function (the same signature as
    itsdangerous' default, on OpenSSL's fast path).
    """

    def __init__(self, secret: str):
        self._signer = _KeyOnceSigner(secret, salt=SALT, digest_method=hashlib.sha1)

    def token(self, subscriber_id: int, issue: str) -> str:
        return self._signer.sign(f"{subscriber_id}:{issue}").decode("ascii")

    def verify(self, token: str) -> UnsubscribeToken:
        try:
            value = self._signer.unsign(token.encode("ascii")).decode("ascii")
        except (BadSignature, UnicodeError):
            raise BadToken("the unsubscribe link is not valid") from None
        number, _, issue = value.partition(":")
        if not number.isdigit() or not issue:
            raise BadToken("the unsubscribe link is not valid")
        return UnsubscribeToken(subscriber_id=int(number), issue=issue)


def unsubscribe_url(settings: Settings, token: str) -> str:
    # Tokens hold only URL-safe characters (digits, slug characters, ':', '.', base64url), so no quoting.
    return f"{settings.base_url.rstrip('/')}/unsubscribe?token={token}"
