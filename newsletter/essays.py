"""issues/*.md → Essay, with the front matter checked.

Every problem is reported as an EssayError that names the file, the line and
what to change, so that one bad essay never hides behind a stack trace.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import frontmatter
import yaml

from .errors import NewsletterError

REQUIRED_KEYS = ("title", "date")
OPTIONAL_KEYS = ("summary", "slug", "draft")
ALLOWED_KEYS = REQUIRED_KEYS + OPTIONAL_KEYS
DATE_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2}-")
SLUG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")
# What a send records of an issue (store/schema.py's sends.issue_slug and
# sends.subject; a test keeps them equal): a longer one could not be queued.
SLUG_MAX = 200
TITLE_MAX = 500
# Control characters other than line breaks (refused with their own message):
# no Subject header, feed (XML) or database may carry them. YAML's "\0" escapes make them.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f]")


class EssayError(NewsletterError):
    """An essay cannot be read; str() gives 'file:line: what is wrong and what to do'."""

    def __init__(self, path: Path, line: int | None, message: str):
        self.path = path
        self.line = line
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.message}"

    def __reduce__(self) -> tuple[type[EssayError], tuple[Path, int | None, str]]:
        return (type(self), (self.path, self.line, self.message))  # workers send these back to the build


@dataclass(frozen=True)
class EssayWarning:
    """Something a reader would miss, though the essay builds: 'file:line: what and what to do'."""

    path: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class Essay:
    path: Path
    slug: str
    title: str
    date: dt.date
    summary: str
    body: str
    digest: str  # of the file's bytes: what the incremental build compares
    draft: bool = False  # built for the preview only: never published, never queued
    body_line: int = 1  # the file's line that holds the body's first line

    def line_of(self, body_line: int) -> int:
        """The file's line number for a 0-based line of the body (as markdown-it maps it)."""
        return self.body_line + body_line

    @property
    def short_slug(self) -> str:
        """The slug without its date prefix, which editors may type instead."""
        return DATE_PREFIX.sub("", self.slug)


def _key_line(text: str, key: str) -> int | None:
    """The line of `key:` in the front matter (the opening --- is line 1)."""
    for number, line in enumerate(text.splitlines()[1:], start=2):
        if line.strip() == "---":
            return None
        if re.match(rf"^{re.escape(key)}\s*:", line):
            return number
    return None


def _closing_line(text: str) -> int:
    for number, line in enumerate(text.splitlines()[1:], start=2):
        if line.strip() == "---":
            return number
    return 1


def _body_line(text: str) -> int:
    """The line where the body starts: python-frontmatter strips the blank lines before it."""
    lines = text.splitlines()
    number = _closing_line(text) + 1
    while number <= len(lines) and not lines[number - 1].strip():
        number += 1
    return number


def _parse_date(path: Path, text: str, value: object) -> dt.date:
    line = _key_line(text, "date")
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        raise EssayError(
            path, line, f"date {value!r} is not a date; write it as YYYY-MM-DD, e.g. date: 2017-03-06"
        ) from None


def _load(path: Path, raw: bytes) -> tuple[str, frontmatter.Post]:
    """The file's text and its front matter parsed; EssayError for text or YAML that cannot be read."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EssayError(path, None, f"is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    if not text.lstrip("\ufeff").startswith("---"):
        raise EssayError(
            path, 1, "has no front matter; start the file with a '---' line, then 'title:' and 'date:', then '---'"
        )
    try:
        return text, frontmatter.loads(text)
    except yaml.YAMLError as exc:
        # The context mark is where the broken construct starts; the problem mark can be far below it.
        mark = getattr(exc, "context_mark", None) or getattr(exc, "problem_mark", None)
        # python-frontmatter hands YAML the text from the end of the opening --- line on.
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise EssayError(path, line, f"front matter is not valid YAML ({problem}); check quoting and colons") from None
    except ValueError as exc:  # YAML read something date-shaped that is no real date
        raise EssayError(
            path, _key_line(text, "date"), f"date is not a real date ({exc}); write it as YYYY-MM-DD, e.g. date: 2017-03-06"
        ) from None


def _check_keys(path: Path, text: str, meta: dict[str, object]) -> None:
    for key in meta:
        if key not in ALLOWED_KEYS:
            raise EssayError(
                path,
                _key_line(text, str(key)),
                f"unknown front matter key '{key}'; allowed keys are {', '.join(ALLOWED_KEYS)}",
            )
    for key in REQUIRED_KEYS:
        if meta.get(key) in (None, ""):
            raise EssayError(path, _closing_line(text), f"front matter has no '{key}'; add a line '{key}: …'")


def _title_and_summary(path: Path, text: str, meta: dict[str, object]) -> tuple[str, str]:
    """The title (the email's Subject: one line, not too long) and the summary, stripped."""
    title = meta["title"]
    if not isinstance(title, str):
        raise EssayError(path, _key_line(text, "title"), "title must be text; put it in quotes")
    if any(c in title.strip() for c in "\r\n\x0b\x0c\x85\u2028\u2029"):
        raise EssayError(path, _key_line(text, "title"), "title has a line break; it is the email's Subject, so keep it on one line")
    if len(title.strip()) > TITLE_MAX:
        raise EssayError(path, _key_line(text, "title"), f"title is {len(title.strip())} characters long; it is the email's "
                         f"Subject, and a send records at most {TITLE_MAX}: shorten it")
    summary = meta.get("summary") or ""
    if not isinstance(summary, str):
        raise EssayError(path, _key_line(text, "summary"), "summary must be text; put it in quotes")
    for key, value in (("title", title), ("summary", summary)):
        if found := _CONTROL.search(value):
            raise EssayError(path, _key_line(text, key), f"{key} has the control character U+{ord(found.group()):04X}, "
                             "which no email header or feed may carry; remove it")
    return title.strip(), summary.strip()


def _slug(path: Path, text: str, meta: dict[str, object]) -> str:
    slug = meta.get("slug") or path.stem
    if not isinstance(slug, str) or not SLUG_PATTERN.match(slug):
        raise EssayError(
            path,
            _key_line(text, "slug"),
            f"slug {slug!r} may hold only lower-case letters, digits and hyphens; rename the file or set 'slug:'",
        )
    if len(slug) > SLUG_MAX:
        raise EssayError(path, _key_line(text, "slug") if meta.get("slug") else None, f"slug is {len(slug)} characters long; "
                         f"it names the issue's folder and its sends, which hold at most {SLUG_MAX}: "
                         "rename the file or set a shorter 'slug:'")
    return slug


def read_essay(path: Path) -> Essay:
    """Read and check one essay file; EssayError, with the line where there is one, for what is wrong."""
    raw = path.read_bytes()
    text, post = _load(path, raw)
    meta = post.metadata
    _check_keys(path, text, meta)
    title, summary = _title_and_summary(path, text, meta)
    slug = _slug(path, text, meta)
    draft = meta.get("draft", False)
    if not isinstance(draft, bool):
        raise EssayError(path, _key_line(text, "draft"), f"draft must be true or false, not {draft!r}")
    return Essay(
        path=path,
        slug=slug,
        title=title,
        date=_parse_date(path, text, meta["date"]),
        summary=summary,
        body=post.content,
        digest=hashlib.sha256(raw).hexdigest(),
        draft=draft,
        body_line=_body_line(text),
    )


def essay_paths(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.md") if p.is_file())


def read_essays(folder: Path) -> tuple[list[Essay], list[EssayError]]:
    """Every essay in `folder` that reads cleanly, and an error for each one that does not.

    Two essays with the same slug are both refused: neither may silently win.
    """
    essays: list[Essay] = []
    errors: list[EssayError] = []
    for path in essay_paths(folder):
        try:
            essays.append(read_essay(path))
        except EssayError as exc:
            errors.append(exc)
    by_slug: dict[str, list[Essay]] = {}
    for essay in essays:
        by_slug.setdefault(essay.slug, []).append(essay)
    clean = []
    for essay in essays:
        twins = [other for other in by_slug[essay.slug] if other is not essay]
        if twins:
            errors.append(
                EssayError(
                    essay.path,
                    None,
                    f"duplicate slug '{essay.slug}', also used by {twins[0].path.name}; rename one file or set 'slug:'",
                )
            )
        else:
            clean.append(essay)
    return clean, errors


def find_essay(essays: list[Essay], name: str) -> Essay | None:
    """The essay an editor means by `name`: its slug, or its slug without the date prefix."""
    name = name.removesuffix(".md")
    for essay in essays:
        if essay.slug == name:
            return essay
    matches = [essay for essay in essays if essay.short_slug == name]
    return matches[0] if len(matches) == 1 else None
