"""CSV import and export of the list.

Import streams the file in chunks, so a list of any size fits in memory, and
runs in one transaction, so a file that turns out unreadable halfway changes
nothing. Export neutralises cells a spreadsheet would run as a formula.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, select, update

from ..errors import NewsletterError
from .db import Store
from .schema import ACTIVE, STATUSES, SUPPRESSED, subscriber_events, subscribers, utcnow
from .subscribers import InvalidEmail, email_key

CHUNK = 1000
DELIMITERS = ",;\t|"
EMAIL_HEADERS = {"email", "emailaddress", "mail", "e-mail", "emailaddr"}
NAME_HEADERS = {"name", "fullname", "displayname"}
# A cell starting with one of these is run as a formula by spreadsheets.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class CsvError(NewsletterError):
    """The file as a whole cannot be imported; nothing was changed."""


@dataclass
class BadRow:
    row: int  # the line in the file
    value: str
    reason: str


@dataclass
class ImportReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    suppressed: int = 0  # already unsubscribed, bounced or complained: left so
    invalid: list[BadRow] = field(default_factory=list)
    dry_run: bool = False

    @property
    def rows(self) -> int:
        return self.added + self.updated + self.unchanged + self.suppressed + len(self.invalid)


def _header_key(name: str) -> str:
    return "".join(ch for ch in name.strip().lower() if ch.isalnum() or ch == "-")


def _unneutralise(value: str) -> str:
    """Undo export's formula guard, so export then import gives back the same data."""
    if value.startswith("'") and value[1:2] and value[1:2] in FORMULA_START:
        return value[1:]
    return value


def neutralise(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_START) else value


def _open_text(path: Path) -> io.TextIOWrapper:
    try:
        return open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - closed by the caller
    except OSError as exc:
        raise CsvError(f"{path}: cannot be read ({exc.strerror})") from None


def _rows(path: Path, handle: io.TextIOWrapper) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row by header) for every non-blank row; the header must name an email column."""
    try:
        first = ""
        while not first.strip():
            first = handle.readline()
            if not first:
                raise CsvError(f"{path}: the file is empty; the first line must be a header with an 'email' column")
        counts = {d: first.count(d) for d in DELIMITERS}
        delimiter = max(counts, key=counts.get) if any(counts.values()) else ","  # type: ignore[arg-type]
        header = next(csv.reader([first], delimiter=delimiter))
        reader = csv.reader(handle, delimiter=delimiter)
        keys = [_header_key(h) for h in header]
        if not EMAIL_HEADERS & set(keys):
            raise CsvError(
                f"{path}: no email column in the header ({', '.join(h.strip() for h in header)}); "
                "name one column 'email'"
            )
        offset = 1
        for values in reader:
            line = reader.line_num + offset
            if not any(v.strip() for v in values):
                continue
            yield line, {header[i].strip(): _unneutralise(v) for i, v in enumerate(values) if i < len(header)}
    except UnicodeDecodeError as exc:
        raise CsvError(f"{path}: is not UTF-8 text ({exc.reason}); save it as UTF-8 CSV. Nothing was imported.") from None
    except csv.Error as exc:
        raise CsvError(f"{path}: is not a readable CSV file ({exc}). Nothing was imported.") from None


def _split(row: dict[str, str]) -> tuple[str, str, dict[str, str]]:
    email = name = ""
    extra: dict[str, str] = {}
    for column, value in row.items():
        key = _header_key(column)
        if key in EMAIL_HEADERS and not email:
            email = value
        elif key in NAME_HEADERS and not name:
            name = value.strip()
        elif value.strip():
            extra[column] = value.strip()
    return email, name, extra


def _apply_chunk(conn: Connection, chunk: dict[str, tuple[str, str, dict[str, str]]], source: str,
                 report: ImportReport, now: Any) -> None:
    existing = {
        row.email_key: row
        for row in conn.execute(select(subscribers).where(subscribers.c.email_key.in_(list(chunk))))
    }
    new_rows = []
    for key, (email, name, extra) in chunk.items():
        row = existing.get(key)
        if row is None:
            new_rows.append(dict(email=email, email_key=key, name=name, attributes=extra, status=ACTIVE,
                                 source=source, created_at=now, updated_at=now, status_changed_at=now))
            continue
        if row.status in SUPPRESSED:
            report.suppressed += 1  # never reactivated, never touched
            continue
        attributes = {**(row.attributes or {}), **extra}
        new_name = name or row.name
        if new_name == row.name and attributes == (row.attributes or {}):
            report.unchanged += 1
            continue
        conn.execute(update(subscribers).where(subscribers.c.id == row.id)
                     .values(name=new_name, attributes=attributes, updated_at=now))
        report.updated += 1
    if new_rows:
        conn.execute(insert(subscribers), new_rows)
        ids = conn.execute(
            select(subscribers.c.id).where(subscribers.c.email_key.in_([r["email_key"] for r in new_rows]))
        ).scalars().all()
        conn.execute(insert(subscriber_events), [dict(subscriber_id=i, at=now, status=ACTIVE, source=source) for i in ids])
        report.added += len(new_rows)


def import_csv(store: Store, path: Path, *, dry_run: bool = False,
               progress: Callable[[int, int], None] | None = None) -> ImportReport:
    """Import a CSV of subscribers; see the module docstring for the guarantees.

    `progress(bytes_read, file_size)` is called after each chunk.
    """
    report = ImportReport(dry_run=dry_run)
    size = path.stat().st_size if path.exists() else 0
    source = f"import of {path.name}"
    handle = _open_text(path)
    with handle, store.engine.connect() as conn:
        transaction = conn.begin()
        try:
            now = utcnow()
            chunk: dict[str, tuple[str, str, dict[str, str]]] = {}
            for line, row in _rows(path, handle):
                email, name, extra = _split(row)
                try:
                    given, key = email_key(email)
                except InvalidEmail as exc:
                    report.invalid.append(BadRow(line, email, str(exc)))
                    continue
                if key in chunk:  # the same person twice in the file: merge, later values win
                    _, old_name, old_extra = chunk[key]
                    chunk[key] = (chunk[key][0], name or old_name, {**old_extra, **extra})
                    continue
                chunk[key] = (given, name, extra)
                if len(chunk) >= CHUNK:
                    _apply_chunk(conn, chunk, source, report, now)
                    chunk = {}
                    if progress:
                        progress(handle.buffer.tell(), size)  # type: ignore[attr-defined]
            if chunk:
                _apply_chunk(conn, chunk, source, report, now)
            if progress:
                progress(size, size)
        except BaseException:
            transaction.rollback()
            raise
        if dry_run:
            transaction.rollback()
        else:
            transaction.commit()
    return report


def export_csv(store: Store, path: Path, statuses: tuple[str, ...] = STATUSES) -> int:
    """Write the subscribers with these statuses to `path`; returns how many."""
    base = ["email", "name", "status", "source", "created_at", "status_changed_at"]
    query = select(subscribers).where(subscribers.c.status.in_(statuses)).order_by(subscribers.c.id)
    with store.engine.connect() as conn:
        extra: dict[str, None] = {}
        for (attributes,) in conn.execute(
            select(subscribers.c.attributes).where(subscribers.c.status.in_(statuses)).execution_options(yield_per=CHUNK)
        ):
            for key in attributes or {}:
                extra.setdefault(key, None)
        columns = base + [k for k in extra if k not in base]
        count = 0
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for row in conn.execute(query.execution_options(yield_per=CHUNK)):
                values = {
                    "email": row.email, "name": row.name, "status": row.status, "source": row.source,
                    "created_at": row.created_at.isoformat(timespec="seconds"),
                    "status_changed_at": row.status_changed_at.isoformat(timespec="seconds"),
                    **{k: str(v) for k, v in (row.attributes or {}).items()},
                }
                writer.writerow([neutralise(values.get(c, "")) for c in columns])
                count += 1
        tmp.replace(path)
    return count
