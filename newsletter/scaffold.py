"""`newsletter init`: a new newsletter folder with everything a writer needs to start.

Writes newsletter.toml (every setting, each explained), issues/ with one
example essay, subscribers/sample.csv and a .gitignore. Templates are not
copied: the packaged ones are used until the writer puts a file of the same
name in templates/. Nothing that exists is ever overwritten.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import MISSING, dataclass, fields
from email.utils import formataddr
from pathlib import Path

from .config import CONFIG_FILE, SECRET_ENV, Settings
from .errors import NewsletterError

# Written uncommented: a newsletter must choose these for itself.
CHOSEN = ("site_name", "sender", "base_url", "postal_address")

# What each setting means, for the newsletter.toml that init writes.
EXPLAINED: dict[str, str] = {
    "site_name": "The newsletter's name: in the masthead, page titles and footers.",
    "sender": "The From address of every email: an address you can send from at your provider.",
    "base_url": "Where `newsletter serve` is reachable by readers (https:// once public): every link starts here.",
    "postal_address": "Your postal address, in the footer of every email and page; anti-spam laws (CAN-SPAM) ask for it.",
    "output_dir": "Where `newsletter build` writes the emails, web pages, archive and feed.",
    "issues_dir": "Where the essays are: one Markdown file per issue.",
    "templates_dir": "Your own templates: a file here replaces the packaged template of the same name.",
    "outbox_dir": "Where the outbox provider writes one .eml file per recipient.",
    "data_dir": "The SQLite database and the signing secret, when neither is configured elsewhere.",
    "database_url": "A SQLAlchemy URL (postgresql://user@host/db); empty means a SQLite file in data_dir.",
    "provider": "How email leaves: outbox (writes .eml files), smtp or sendgrid.",
    "smtp_url": "For provider = smtp: smtp://user:password@host:587 (STARTTLS) or smtps://host:465.",
    "sendgrid_host": "For provider = sendgrid: the API's address (its key comes from SENDGRID_API_KEY).",
    "batch_size": "Recipients claimed and sent together, 1 to 1,000.",
    "concurrency": "SMTP connections, or SendGrid requests, a scheduler keeps going at once (1 to 64).",
    "max_per_second": "At most this many messages a second (0 or unset: no limit); ask your provider what it allows.",
    "max_per_hour": "At most this many messages in any hour (0 or unset: no limit).",
    "grace_hours": "A send found later than this is held until you confirm it (`newsletter resolve SEND --send-late`).",
    "timezone": "The zone of `newsletter queue --at` times written without an offset, e.g. Europe/London.",
    "language": "The language of the emails and pages (an HTML lang code).",
    "retry_after": "Seconds before a recipient refused for now (a 4xx) is tried again; the wait doubles each time.",
    "retry_for_hours": "How long a recipient refused for now is retried before it counts as failed.",
    "lease_seconds": "How long another scheduler waits before taking over the batches of one that stopped answering.",
    "confirm_hours": "A signup's confirmation link expires after this long.",
    "signup_min_seconds": "A form posted sooner than this after it was shown is taken for a bot.",
    "signup_per_address_per_day": "Confirmation emails one address can be sent in a day.",
    "signup_per_ip_per_hour": "Signups one network can make in an hour.",
    "signup_origins": "Other sites (https://example.org, comma-separated) whose signup forms may post to /subscribe.",
    "welcome_newest_issue": "After the welcome email, also send the newest issue the list received.",
    "max_request_bytes": "The public app refuses a larger request body (413).",
}

GITIGNORE = """\
# Made by `newsletter build`, `newsletter scheduler` and the store: rebuilt or private.
/{output}/
/{outbox}/
/{data}/
"""

SAMPLE_CSV = """\
email,name
reader@example.com,A Reader
"""

ESSAY = """\
---
title: {title}
date: {date}
summary: "What this newsletter is about, and how often it comes."
---

This is the first issue. Edit this file, or write a new one beside it:
every Markdown file in `issues/` is one issue, named `YYYY-MM-DD-some-words.md`.

The lines between the two `---` at the top are its front matter: a `title`
and a `date` are required, a `summary` is shown in inboxes and the archive.

## What to do next

1. Run `newsletter preview` and watch this page change as you save.
2. Put your readers in a CSV file and run `newsletter subscribers import readers.csv`.
3. Send yourself a copy: `newsletter test welcome --to you@example.com`.
4. When it reads well, `newsletter queue welcome --at "{date} 09:00"`.
"""


class FolderNotEmpty(NewsletterError):
    """init would overwrite something that exists; str() names it."""


@dataclass(frozen=True)
class NewNewsletter:
    root: Path
    written: list[Path]
    essay: Path


def settings_file(site_name: str) -> str:
    """newsletter.toml with every setting, each explained; the optional ones commented out at their default."""
    lines = [
        "# Settings for this newsletter. Any key can be overridden from the environment as",
        "# NEWSLETTER_<KEY> (NEWSLETTER_BASE_URL overrides base_url). Secrets never go here: set",
        "# " + ", ".join(sorted(SECRET_ENV.values())) + " in the environment.",
        "",
    ]
    chosen = {"site_name": site_name, "sender": formataddr((site_name, "editor@example.com")),
              "base_url": "http://127.0.0.1:8000", "postal_address": ""}
    settings = [item for item in fields(Settings) if item.name not in ("root", "warnings") and item.name not in SECRET_ENV]
    settings.sort(key=lambda item: item.name not in CHOSEN)  # what to choose first, the rest as they are
    for item in settings:
        lines.append(f"# {EXPLAINED.get(item.name, item.name.replace('_', ' ').capitalize() + '.')}")
        if item.name in CHOSEN:
            lines.append(f"{item.name} = {_toml(chosen[item.name])}")
        else:
            default = item.default if item.default is not MISSING else ""
            lines.append(f"# {item.name} = {_toml(default)}")
        lines.append("")
    return "\n".join(lines)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def create_newsletter(root: Path, site_name: str = "My Newsletter", today: dt.date | None = None) -> NewNewsletter:
    """Write a new newsletter at `root` (made if missing). Refuses, writing nothing,
    if any file it would write is already there."""
    today = today or dt.date.today()
    defaults = Settings(root=root)
    essay = Path(defaults.issues_dir) / f"{today.isoformat()}-welcome.md"
    files = {
        Path(CONFIG_FILE): settings_file(site_name),
        Path(".gitignore"): GITIGNORE.format(output=defaults.output_dir, outbox=defaults.outbox_dir, data=defaults.data_dir),
        essay: ESSAY.format(title=json.dumps(f"Welcome to {site_name}", ensure_ascii=False), date=today.isoformat()),
        Path("subscribers") / "sample.csv": SAMPLE_CSV,
    }
    if root.exists() and not root.is_dir():
        raise FolderNotEmpty(f"{root} is a file; give a folder for the new newsletter")
    existing = [root / name for name in files if (root / name).exists()]
    if existing:
        raise FolderNotEmpty(
            f"{existing[0]} already exists; init never overwrites, so choose a new folder or move it away"
        )
    written = []
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8", newline="\n") as out:  # "x": never overwrite, even in a race
            out.write(text)
        written.append(path)
    return NewNewsletter(root=root, written=written, essay=root / essay)
