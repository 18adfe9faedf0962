"""newsletter.toml plus the environment → one typed Settings object.

Every key in newsletter.toml can be overridden by an environment variable
named NEWSLETTER_<KEY> (NEWSLETTER_BASE_URL overrides base_url, and so on).
Secrets are read from the environment only and never from a file in the repo.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import typing
from typing import Any
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from urllib.parse import urlsplit

from .errors import NewsletterError

CONFIG_FILE = "newsletter.toml"

# Secrets live in the environment only; naming one in newsletter.toml is an error.
SECRET_ENV = {
    "secret": "NEWSLETTER_SECRET",
    "secret_fallbacks": "NEWSLETTER_SECRET_FALLBACKS",  # older secrets, comma-separated: verify, never sign
    "sendgrid_api_key": "SENDGRID_API_KEY",
    "sendgrid_webhook_public_key": "SENDGRID_WEBHOOK_PUBLIC_KEY",
}


BATCH_SIZE_MAX = 1000  # what providers accept in one call (SendGrid: 1,000 personalizations)
CONCURRENCY_MAX = 64  # workers in one scheduler: more is a mistake, not a speed-up
MULTILINE = {"postal_address"}  # the only settings that may span lines
NOT_A_NEWSLETTER = "no newsletter.toml here or in a parent folder; run `newsletter init`"


class ConfigError(NewsletterError):
    """A setting is missing, unknown or of the wrong type; the message names it."""


class NotANewsletter(ConfigError):
    """The working folder is not inside a newsletter: nothing may be read or created here."""


@dataclass(frozen=True)
class Settings:
    root: Path
    site_name: str = "The Newsletter"
    sender: str = "The Newsletter <newsletter@example.com>"
    base_url: str = "http://127.0.0.1:8000"
    output_dir: str = "build"
    issues_dir: str = "issues"
    templates_dir: str = "templates"
    outbox_dir: str = "outbox"
    data_dir: str = ".newsletter"
    database_url: str = ""
    provider: str = "outbox"
    smtp_url: str = "smtp://127.0.0.1:25"
    sendgrid_host: str = "https://api.sendgrid.com"
    batch_size: int = 500
    grace_hours: float = 24.0
    retry_after: float = 300.0  # seconds before a temporarily refused delivery is tried again; doubled each time
    retry_for_hours: float = 24.0  # then it fails with the last answer
    lease_seconds: float = 60.0  # a scheduler's claims are its own this long after its last renewal
    concurrency: int = 4  # SMTP connections, or SendGrid requests, one scheduler keeps going at once
    max_per_second: float = 0.0  # messages a second, all of a scheduler's workers together; 0 (unset): no limit
    max_per_hour: int = 0  # messages in any hour, likewise; 0 (unset): no limit
    timezone: str = "UTC"
    language: str = "en"
    # The signup form (see signup.py).
    confirm_hours: float = 48.0  # a confirmation link expires after this long
    signup_min_seconds: float = 3.0  # a form posted sooner after it was shown is taken for a bot
    signup_per_address_per_day: int = 3  # confirmation emails to one address per 24 hours
    signup_per_ip_per_hour: int = 20  # signups accepted from one network (/24, /48) per hour
    signup_origins: str = ""  # other sites (origins, comma-separated) whose forms may post here
    welcome_newest_issue: bool = False  # after the welcome email, send the newest issue too
    max_request_bytes: int = 1_048_576  # the public app refuses a larger request body (413)
    postal_address: str = ""  # shown in every footer; anti-spam laws (CAN-SPAM) ask for it
    secret: str = field(default="", repr=False)
    secret_fallbacks: str = field(default="", repr=False)
    sendgrid_api_key: str = field(default="", repr=False)
    sendgrid_webhook_public_key: str = field(default="", repr=False)
    # What is allowed but probably not meant (an http:// public base_url…), for the CLI to show.
    warnings: tuple[str, ...] = field(default=(), compare=False, repr=False)

    # Paths, resolved against the project root.
    @property
    def output_path(self) -> Path:
        return self.root / self.output_dir

    @property
    def issues_path(self) -> Path:
        return self.root / self.issues_dir

    @property
    def templates_path(self) -> Path:
        return self.root / self.templates_dir

    @property
    def outbox_path(self) -> Path:
        return self.root / self.outbox_dir

    @property
    def data_path(self) -> Path:
        return self.root / self.data_dir

    @property
    def site_url(self) -> str:
        """base_url without a trailing slash: every link of ours is site_url + "/…"."""
        return self.base_url.rstrip("/")

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL: the configured one, or a SQLite file in the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_path / 'newsletter.db'}"

    @cached_property  # parsed once: it is asked for every message
    def sender_address(self) -> str:
        """The sender's address as it goes on the wire: an internationalised domain in its ASCII (punycode) form."""
        from email.utils import parseaddr

        from .addressing import wire_address

        return wire_address(parseaddr(self.sender)[1])

    @cached_property
    def sender_header(self) -> str:
        """The From header: the sender as written, with the domain in ASCII where it was not."""
        from email.utils import formataddr, parseaddr

        if parseaddr(self.sender)[1] == self.sender_address:
            return self.sender
        return formataddr((self.sender_name, self.sender_address))

    @cached_property
    def sender_name(self) -> str:
        from email.utils import parseaddr

        return parseaddr(self.sender)[0]


_NOT_SETTINGS = {"root", "warnings"}
_FIELDS = {f.name: f for f in dataclasses.fields(Settings) if f.name not in _NOT_SETTINGS}
_TYPES = {name: hint for name, hint in typing.get_type_hints(Settings).items() if name in _FIELDS}
POSITIVE = {"retry_after", "retry_for_hours", "lease_seconds"}  # a zero here would retry or take over at once
NO_LIMIT = {"max_per_second", "max_per_hour"}  # 0 means no limit
_TOML_KEYS = {name for name in _FIELDS if name not in SECRET_ENV}


def find_root(start: Path | None = None) -> Path:
    """The nearest folder at or above `start` (the working folder) holding newsletter.toml,
    else NotANewsletter: a command run in the wrong folder must create nothing there."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    raise NotANewsletter(NOT_A_NEWSLETTER)


def _as_int(key: str, value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigError(f"{where}: '{key}' must be a whole number, not {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{where}: '{key}' must be a whole number, not {value!r}") from None
    if number < 0 or (number == 0 and key not in NO_LIMIT):
        raise ConfigError(f"{where}: '{key}' must be greater than 0, not {number}")
    return number


def _as_bool(key: str, value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.strip().lower() in ("true", "yes", "1")
    raise ConfigError(f"{where}: '{key}' must be true or false, not {value!r}")


FLOAT_MAX = 10_000_000  # seconds, hours or messages: far past any sensible value, far inside a date's range


def _as_float(key: str, value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{where}: '{key}' must be a number, not {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{where}: '{key}' must be a number, not {value!r}") from None
    if not abs(number) <= FLOAT_MAX:  # inf, nan and the absurd: times built from them would overflow
        raise ConfigError(f"{where}: '{key}' must be a number no larger than {FLOAT_MAX:,.0f}, not {value!r}")
    if key in POSITIVE and not number > 0:
        raise ConfigError(f"{where}: '{key}' must be greater than 0, not {value!r}")
    if key in NO_LIMIT and not number >= 0:
        raise ConfigError(f"{where}: '{key}' must be 0 (no limit) or more, not {value!r}")
    return number


def _as_str(key: str, value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: '{key}' must be a string, not {value!r}")
    allowed = "\n" if key in MULTILINE else ""
    control = next((c for c in value if (c < " " or "\x7f" <= c <= "\x9f") and c not in allowed), None)
    if control is not None:  # a line break in a URL or an address would end up in a mail header
        raise ConfigError(f"{where}: '{key}' contains the control character U+{ord(control):04X}; remove it")
    return value


# Each setting's type (read from Settings' annotations) → the function that checks and converts a value.
_COERCE: dict[object, Callable[[str, object, str], object]] = {int: _as_int, bool: _as_bool, float: _as_float, str: _as_str}


def _coerce(key: str, value: object, where: str) -> object:
    return _COERCE[_TYPES[key]](key, value, where)


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_base_url(value: str, where: str) -> str | None:
    """None, or a warning; ConfigError when every link built from it would be broken."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{where}: 'base_url' must be an absolute http(s) URL such as https://news.example.org, not {value!r}; "
            "every link in every email, unsubscribe included, starts with it"
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"{where}: 'base_url' must not have a ?query or #fragment, not {value!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        return (f"{where}: 'base_url' is http:// on {parts.hostname}; mail apps only offer one-click "
                "unsubscribe over HTTPS, so use https:// once the site is public")
    return None


# Cheap on purpose (every command reads the settings): the address's shape, as senders need it.
_ADDRESS = re.compile(r"[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\".]+")


def _check_sender(value: str, where: str) -> None:
    from email.utils import getaddresses, parseaddr

    from .addressing import UnsendableAddress, wire_address

    if "\n" in value or "\r" in value or "\0" in value:
        raise ConfigError(f"{where}: 'sender' must be one line")
    _, address = parseaddr(value)
    if not _ADDRESS.fullmatch(address) or (value.strip() != address and "<" not in value) or len(getaddresses([value])) != 1:
        raise ConfigError(
            f"{where}: 'sender' must be one address such as \"Site Name <editor@example.org>\" or editor@example.org, "
            f"not {value!r}"
        )
    if not address.rpartition("@")[0].isascii():
        raise ConfigError(f"{where}: 'sender' has non-ASCII letters before the @, which few mail servers accept; "
                          "use an ASCII address to send from")
    try:
        wire_address(address)
    except UnsendableAddress as exc:
        raise ConfigError(f"{where}: 'sender' cannot be sent from ({exc})") from None


def _key_line(text: str, key: str) -> int | None:
    """The line of newsletter.toml that sets `key`, to point the editor at it."""
    pattern = re.compile(rf"^[ \t]*(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')[ \t]*=", re.MULTILINE)
    found = pattern.search(text)
    return text.count("\n", 0, found.start()) + 1 if found else None


def load_settings(root: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read newsletter.toml under `root` (found from the working folder if not given),
    then apply NEWSLETTER_* overrides and the secrets from the environment."""
    env = os.environ if environ is None else environ
    root = find_root() if root is None else root.resolve()
    # Any: each value was checked against its field's type by _coerce (secrets are strings from the environment).
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    _read_file(root / CONFIG_FILE, values, sources)
    for key in _TOML_KEYS:
        name = f"NEWSLETTER_{key.upper()}"
        if env.get(name):
            sources[key] = f"environment variable {name}"
            values[key] = _coerce(key, env[name], sources[key])
    for key, name in SECRET_ENV.items():
        if env.get(name):
            values[key] = env[name]
    warnings = _check_together(values, sources)
    return Settings(root=root, warnings=tuple(warnings), **values)


def _read_file(path: Path, values: dict[str, Any], sources: dict[str, str]) -> None:
    """newsletter.toml's settings into `values`, and where each was set into `sources`."""
    if not path.is_file():
        return
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    for key, value in data.items():
        line = _key_line(text, key)
        sources[key] = f"{path}:{line}" if line else str(path)
        if key in SECRET_ENV:
            raise ConfigError(
                f"{sources[key]}: '{key}' is a secret and must not be kept in a file; "
                f"set the environment variable {SECRET_ENV[key]} instead"
            )
        if key not in _TOML_KEYS:
            raise ConfigError(
                f"{sources[key]}: unknown key '{key}'; known keys are {', '.join(sorted(_TOML_KEYS))}"
            )
        values[key] = _coerce(key, value, sources[key])


def _check_together(values: dict[str, Any], sources: dict[str, str]) -> list[str]:
    """The checks beyond each value's type; ConfigError naming where a value was set, or the warnings."""

    def where(key: str) -> str:
        return sources.get(key, "the default")

    from .providers import REGISTRY  # imported here, as it imports this module

    provider = values.get("provider", Settings.provider)
    if provider not in REGISTRY:
        raise ConfigError(f"{where('provider')}: 'provider': '{provider}' is not one of {', '.join(REGISTRY)}")
    batch_size = values.get("batch_size", Settings.batch_size)
    if batch_size > BATCH_SIZE_MAX:
        raise ConfigError(f"{where('batch_size')}: 'batch_size' must be between 1 and {BATCH_SIZE_MAX:,}, not {batch_size}")
    concurrency = values.get("concurrency", Settings.concurrency)
    if concurrency > CONCURRENCY_MAX:
        raise ConfigError(f"{where('concurrency')}: 'concurrency' must be between 1 and {CONCURRENCY_MAX}, not {concurrency}")
    warning = _check_base_url(values.get("base_url", Settings.base_url), where("base_url"))
    _check_sender(values.get("sender", Settings.sender), where("sender"))
    return [warning] if warning else []
