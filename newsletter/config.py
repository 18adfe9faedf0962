"""newsletter.toml plus the environment → one typed Settings object.

Every key in newsletter.toml can be overridden by an environment variable
named NEWSLETTER_<KEY> (NEWSLETTER_BASE_URL overrides base_url, and so on).
Secrets are read from the environment only and never from a file in the repo.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import NewsletterError

CONFIG_FILE = "newsletter.toml"
PROVIDERS = ("outbox", "smtp", "sendgrid")

# Secrets live in the environment only; naming one in newsletter.toml is an error.
SECRET_ENV = {
    "secret": "NEWSLETTER_SECRET",
    "secret_fallbacks": "NEWSLETTER_SECRET_FALLBACKS",  # older secrets, comma-separated: verify, never sign
    "sendgrid_api_key": "SENDGRID_API_KEY",
    "sendgrid_webhook_public_key": "SENDGRID_WEBHOOK_PUBLIC_KEY",
}


class ConfigError(NewsletterError):
    """A setting is missing, unknown or of the wrong type; the message names it."""


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
    timezone: str = "UTC"
    language: str = "en"
    secret: str = field(default="", repr=False)
    secret_fallbacks: str = field(default="", repr=False)
    sendgrid_api_key: str = field(default="", repr=False)
    sendgrid_webhook_public_key: str = field(default="", repr=False)

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
    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL: the configured one, or a SQLite file in the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_path / 'newsletter.db'}"

    @property
    def sender_address(self) -> str:
        from email.utils import parseaddr

        return parseaddr(self.sender)[1]

    @property
    def sender_name(self) -> str:
        from email.utils import parseaddr

        return parseaddr(self.sender)[0]


_FIELDS = {f.name: f for f in dataclasses.fields(Settings) if f.name != "root"}
POSITIVE = {"retry_after", "retry_for_hours", "lease_seconds"}  # a zero here would retry or take over at once
_TOML_KEYS = {name for name in _FIELDS if name not in SECRET_ENV}


def find_root(start: Path | None = None) -> Path:
    """The nearest folder at or above `start` holding newsletter.toml, else `start`."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    return here


def _coerce(key: str, value: object, where: str) -> object:
    expected = _FIELDS[key].type
    if expected == "int":
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{where}: '{key}' must be a whole number, not {value!r}")
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(f"{where}: '{key}' must be a whole number, not {value!r}") from None
        if number <= 0:
            raise ConfigError(f"{where}: '{key}' must be greater than 0, not {number}")
        return number
    if expected == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{where}: '{key}' must be a number, not {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{where}: '{key}' must be a number, not {value!r}") from None
        if key in POSITIVE and not number > 0:
            raise ConfigError(f"{where}: '{key}' must be greater than 0, not {value!r}")
        return number
    if not isinstance(value, str):
        raise ConfigError(f"{where}: '{key}' must be a string, not {value!r}")
    return value


def load_settings(root: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read newsletter.toml under `root` (found from the working folder if not given),
    then apply NEWSLETTER_* overrides and the secrets from the environment."""
    env = os.environ if environ is None else environ
    root = find_root(root) if root is None else root.resolve()
    values: dict[str, object] = {}

    path = root / CONFIG_FILE
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        for key, value in data.items():
            if key in SECRET_ENV:
                raise ConfigError(
                    f"{path}: '{key}' is a secret and must not be kept in a file; "
                    f"set the environment variable {SECRET_ENV[key]} instead"
                )
            if key not in _TOML_KEYS:
                raise ConfigError(
                    f"{path}: unknown key '{key}'; known keys are {', '.join(sorted(_TOML_KEYS))}"
                )
            values[key] = _coerce(key, value, str(path))

    for key in _TOML_KEYS:
        name = f"NEWSLETTER_{key.upper()}"
        if env.get(name):
            values[key] = _coerce(key, env[name], f"environment variable {name}")
    for key, name in SECRET_ENV.items():
        if env.get(name):
            values[key] = env[name]

    provider = values.get("provider", "outbox")
    if provider not in PROVIDERS:
        raise ConfigError(f"provider: '{provider}' is not one of {', '.join(PROVIDERS)}")
    return Settings(root=root, **values)  # type: ignore[arg-type]
