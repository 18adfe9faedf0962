"""Signed, personal unsubscribe links.

A token names a subscriber and an issue and is signed with NEWSLETTER_SECRET
(itsdangerous). It never expires: an unsubscribe link must work for as long
as the email sits in someone's inbox.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature
from itsdangerous import Signer as ItsdangerousSigner
from itsdangerous.encoding import base64_decode, base64_encode
from sqlalchemy.engine import make_url

from .config import ConfigError, Settings

SALT = "newsletter.unsubscribe"
# One compact encoder, made once: json.dumps(separators=…) builds a new one per call.
_compact_json = json.JSONEncoder(separators=(",", ":")).encode


class BadToken(ValueError):
    """Forged, tampered with, or signed with another secret."""


@dataclass(frozen=True)
class UnsubscribeToken:
    subscriber_id: int
    issue: str


def secret_file(settings: Settings) -> Path | None:
    """Where the embedded default keeps its secret: beside the SQLite database."""
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database).with_name("secret")


def load_secret(settings: Settings) -> str:
    """NEWSLETTER_SECRET; or, on a SQLite database, a random secret made on first use
    and kept beside it (never in git). Any other database needs NEWSLETTER_SECRET."""
    if settings.secret:
        return settings.secret
    path = secret_file(settings)
    if path is None:
        raise ConfigError(
            "NEWSLETTER_SECRET is not set. Unsubscribe links are signed with it, and this database "
            "is not a local SQLite file beside which one could be kept: set NEWSLETTER_SECRET to a long "
            "random string, the same on every machine that sends or serves this newsletter"
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
    """Makes and checks tokens: a base64 JSON [subscriber id, issue] signed by itsdangerous.

    One itsdangerous Signer is kept for the lifetime of this object, so a token
    costs one HMAC: the scheduler makes one per recipient.
    """

    def __init__(self, secret: str):
        self._signer = _KeyOnceSigner(secret, salt=SALT)

    def token(self, subscriber_id: int, issue: str) -> str:
        payload = base64_encode(_compact_json([subscriber_id, issue]).encode("utf-8"))
        return self._signer.sign(payload).decode("ascii")

    def verify(self, token: str) -> UnsubscribeToken:
        try:
            value = json.loads(base64_decode(self._signer.unsign(token.encode("ascii"))))
        except (BadSignature, ValueError, UnicodeError):
            raise BadToken("the unsubscribe link is not valid") from None
        if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], int) and isinstance(value[1], str)):
            raise BadToken("the unsubscribe link is not valid")
        return UnsubscribeToken(subscriber_id=value[0], issue=value[1])


def unsubscribe_url(settings: Settings, token: str) -> str:
    # Tokens hold only URL-safe characters (base64url and '.'), so no quoting is needed.
    return f"{settings.base_url.rstrip('/')}/unsubscribe?token={token}"
