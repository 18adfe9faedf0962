"""CSV import of the list (export is in csvexport.py).

Import streams the file in chunks, so a list of any size fits in memory, and
runs in one transaction, so a file that turns out unreadable halfway changes
nothing. Every value is checked at the door (fields.py): a bad row is
reported with its line and reason, and the good rows are kept.

An export imports back as it was: each row's status, source and times are
restored, and a new subscriber gets its whole status history and consent
records too. Where the suppression guarantee lives for imports: a row that
says unsubscribed, bounced or complained suppresses its address, new or on
the list; a suppressed address is never touched, whatever its row says.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, select, text, update

from ..errors import NewsletterError
from .csvexport import export_csv, neutralise, unneutralise
from .db import Store, for_writing
from .fields import NAME_MAX, SOURCE_MAX, InvalidEmail, InvalidField, clean_text, column_length, fit, normalise_address
from .schema import ACTIVE, SUPPRESSED, SubscriberStatus, signups, subscriber_events, subscribers, utcnow
from .signups import SignupKind
from .subscribers import StatusChange

__all__ = ["CsvError", "ImportReport", "RowNote", "export_csv", "import_csv", "neutralise"]

CHUNK = 1000
VALUE_MAX = 10_000  # characters in one attribute value: with the export's formula guard, well inside FIELD_LIMIT
FIELD_LIMIT = 16 * 1024 * 1024  # what the CSV reader takes in one cell, so that a longer value is its row's error
DELIMITERS = ",;\t|"
# Header cells are compared by their letters and digits alone, case-folded:
# "E-mail Address", "Email address" and "EMAIL" are all the email column.
EMAIL_HEADERS = {"email", "emailaddress", "mail", "emailaddr", "mailaddress"}
NAME_HEADERS = {"name", "fullname", "displayname"}
# The columns an export writes besides email and name; the first column of each kind
# is the real one, and a later look-alike is kept as an attribute.
RESTORED = {"status": "status", "source": "source", "createdat": "created_at", "statuschangedat": "status_changed_at",
            "subscriberid": "subscriber_id", "statushistory": "status_history", "consentrecords": "consent_records"}
FORM_MAX = column_length(signups.c.form)
IP_MAX = column_length(signups.c.requested_ip)
# "sep=;" on the first line: the delimiter declared for spreadsheet programs, before the header.
_SEP_LINE = re.compile(r"sep=(.)", re.IGNORECASE)
# Something on a line after the first that looks like an address: the sign of a quote left open.
_ADDRESS_LIKE = re.compile(r"[^\s@,;|\"']+@[^\s@,;|\"']+\.[^\s@,;|\"']+")


class CsvError(NewsletterError):
    """The file as a whole cannot be imported; nothing was changed."""


@dataclass
class RowNote:
    row: int  # the line in the file
    value: str
    reason: str


BadRow = RowNote  # the name earlier versions used


@dataclass
class ImportReport:
    added: int = 0  # new, active
    suppressions: int = 0  # rows that said unsubscribed, bounced or complained, now recorded so
    updated: int = 0
    unchanged: int = 0
    suppressed: int = 0  # already unsubscribed, bounced or complained: left so
    invalid: list[RowNote] = field(default_factory=list)
    merged: list[RowNote] = field(default_factory=list)  # the same address as an earlier row of the file
    cleaned: list[RowNote] = field(default_factory=list)  # kept, with line breaks made spaces
    renumbered: list[RowNote] = field(default_factory=list)  # kept under a new id: its old id is taken here
    dry_run: bool = False

    @property
    def rows(self) -> int:
        return self.added + self.suppressions + self.updated + self.unchanged + self.suppressed + len(self.invalid) + len(self.merged)


@dataclass
class _Columns:
    """Which column holds what, decided once from the header."""

    email: int
    name: int | None = None
    restored: dict[str, int] = field(default_factory=dict)  # status, source, created_at, status_changed_at
    attributes: list[tuple[int, str]] = field(default_factory=list)
    width: int = 0  # the columns the header names: cells past them belong to none

    def __post_init__(self) -> None:
        self.width = max([self.email, self.name or 0, *self.restored.values(), *(i for i, _ in self.attributes)]) + 1


@dataclass
class _Row:
    line: int
    email: str
    key: str
    name: str
    attributes: dict[str, str]
    status: str = ACTIVE
    source: str | None = None
    created_at: dt.datetime | None = None
    status_changed_at: dt.datetime | None = None
    subscriber_id: int | None = None  # the id in the store this row was exported from
    history: list[StatusChange] = field(default_factory=list)  # every status it had, as exported
    consents: list[dict[str, Any]] = field(default_factory=list)  # its confirmed signups, as signups rows


def _header_key(name: str) -> str:
    return "".join(ch for ch in name.casefold() if ch.isalnum())


def _columns(path: Path, line: int, header: list[str]) -> _Columns:
    email = name = None
    restored: dict[str, int] = {}
    attributes: list[tuple[int, str]] = []
    for index, cell in enumerate(header):
        title = unneutralise(cell).strip()
        key = _header_key(title)
        if key in EMAIL_HEADERS and email is None:
            email = index
        elif key in NAME_HEADERS and name is None:
            name = index
        elif key in RESTORED and RESTORED[key] not in restored:
            restored[RESTORED[key]] = index
        elif title:
            try:
                attribute = clean_text(title, "column name", SOURCE_MAX)[0]
            except InvalidField as exc:
                raise CsvError(f"{path}: line {line}, column {index + 1}: {exc}. Nothing was imported.") from None
            if (repeated := next((i for i, known in attributes if known == attribute), None)) is not None:
                raise CsvError(f"{path}: line {line}: column {index + 1} ({attribute!r}) repeats column {repeated + 1}, "
                               "and one of their values would be lost; rename or remove one. Nothing was imported.")
            attributes.append((index, attribute))
    if email is None:
        raise CsvError(
            f"{path}: no email column in the header ({', '.join(h.strip() for h in header)}); "
            "name one column 'email'"
        )
    return _Columns(email=email, name=name, restored=restored, attributes=attributes)


def _never_closed(text: str, delimiter: str) -> bool:
    """Whether a quote opened in this record's text is never closed, as only the end of the file allows
    (mid-file, the quote takes in the lines after it, which _parse reports). A stray quote inside an
    unquoted value (O"Brien) is no such thing."""
    if text.count('"') % 2 == 0:
        return False
    try:
        list(csv.reader([text], delimiter=delimiter, strict=True))
    except csv.Error as exc:
        return "end of data" in str(exc)
    return False


@dataclass(frozen=True)
class _Record:
    first: int  # its first and last line in the file
    last: int
    columns: _Columns
    values: list[str]
    unclosed: bool  # a quote opened in it was never closed
    delimiter: str = ","


def _row_like(line: str, delimiter: str) -> bool:
    """Whether a line inside a value reads as a row of the file (an address, alone or among cells):
    then an unclosed quote took it in. "Bcc: someone@example.org" in a name is only text."""
    stripped = line.strip()
    return bool(_ADDRESS_LIKE.fullmatch(stripped) or (delimiter in stripped and _ADDRESS_LIKE.search(stripped)))


def _header(path: Path, handle: io.TextIOWrapper) -> tuple[str, int, str]:
    """(the header line, the lines it took, the delimiter): blank lines and a `sep=;` line before it are passed over."""
    first, skipped = "", 0
    delimiter = None
    while not first.strip():
        first = handle.readline()
        skipped += 1
        if not first:
            raise CsvError(f"{path}: the file is empty; the first line must be a header with an 'email' column")
        if delimiter is None and (declared := _SEP_LINE.fullmatch(first.strip())):
            delimiter, first = declared.group(1), ""
    if delimiter is None:
        counts = {d: first.count(d) for d in DELIMITERS}
        delimiter = max(counts, key=counts.__getitem__) if any(counts.values()) else ","
    return first, skipped, delimiter


def _records(path: Path, handle: io.TextIOWrapper) -> Iterator[_Record]:
    """Every non-blank record of the file, after its header."""
    skipped, last = 0, 0
    try:
        first, skipped, delimiter = _header(path, handle)
        columns = _columns(path, skipped, next(csv.reader([first], delimiter=delimiter)))
        raw: list[str] = []

        def lines() -> Iterator[str]:
            for line in handle:
                raw.append(line)
                yield line

        csv.field_size_limit(FIELD_LIMIT)  # a value too long is that row's error (VALUE_MAX), not the file's
        reader = csv.reader(lines(), delimiter=delimiter)
        for values in reader:
            start, last = last + 1, reader.line_num
            unclosed = _never_closed("".join(raw), delimiter)
            raw.clear()
            if any(v.strip() for v in values):
                yield _Record(start + skipped, last + skipped, columns, values, unclosed, delimiter)
    except UnicodeDecodeError as exc:
        raise CsvError(f"{path}: is not UTF-8 text ({exc.reason}); save it as UTF-8 CSV. Nothing was imported.") from None
    except csv.Error as exc:
        raise CsvError(
            f"{path}: line {last + skipped + 1} cannot be read as CSV ({exc}); a quote opened there and never "
            "closed is the usual cause. Nothing was imported."
        ) from None


def _when(value: str, column: str) -> dt.datetime | None:
    if not value.strip():
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidField(f"the {column} {value.strip()[:40]!r} is not a date and time such as 2026-11-25T09:30:00") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def _json_list(value: str, column: str, what: str) -> list[dict[str, Any]]:
    if not value.strip():
        return []
    try:
        items = json.loads(value)
    except ValueError:
        items = None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise InvalidField(f"the {column} is not a list of {what} as `subscribers export` writes it; "
                           "empty the cell to import the row without it (or rename the column if it means something else)")
    return items


def _history(value: str) -> list[StatusChange]:
    changes = []
    for item in _json_list(value, "status_history", "status changes"):
        at = _when(str(item.get("at", "")), "status_history time")
        if at is None:
            raise InvalidField("a change in the status_history has no time")
        try:
            status = SubscriberStatus(str(item.get("status", "")))
        except ValueError:
            raise InvalidField(f"the status_history holds the status {str(item.get('status'))[:40]!r}, "
                               f"which is not one of {', '.join(SubscriberStatus)}") from None
        source = clean_text(str(item.get("source", "")), "source in the status_history", SOURCE_MAX)[0]
        changes.append(StatusChange(at=at, status=status, source=source))
    return changes


def _consents(value: str) -> list[dict[str, Any]]:
    records = []
    for item in _json_list(value, "consent_records", "confirmed signups"):
        requested_at = _when(str(item.get("requested_at", "")), "consent_records requested_at")
        confirmed_at = _when(str(item.get("confirmed_at", "")), "consent_records confirmed_at")
        if requested_at is None or confirmed_at is None:
            missing = "requested_at" if requested_at is None else "confirmed_at"
            raise InvalidField(f"a record in the consent_records has no {missing} time")
        records.append(dict(
            kind=SignupKind.CONFIRM, requested_at=requested_at, confirmed_at=confirmed_at,
            form=clean_text(str(item.get("form", "")), "form in the consent_records", FORM_MAX)[0],
            requested_ip=clean_text(str(item.get("requested_ip", "")), "requested_ip in the consent_records", IP_MAX)[0],
            confirmed_ip=clean_text(str(item.get("confirmed_ip", "")), "confirmed_ip in the consent_records", IP_MAX)[0],
        ))
    return records


def _restore(row: _Row, restored: dict[str, str]) -> None:
    """The columns our own export writes (status, source, times, id, history, consents), onto `row`."""
    if restored.get("status"):
        try:
            row.status = SubscriberStatus(restored["status"].lower())
        except ValueError:
            raise InvalidField(
                f"the status {restored['status'][:40]!r} is not one of {', '.join(SubscriberStatus)} "
                "(rename the column if it means something else)"
            ) from None
    if restored.get("source"):
        row.source = clean_text(restored["source"], "source", SOURCE_MAX)[0]
    row.created_at = _when(restored.get("created_at", ""), "created_at")
    row.status_changed_at = _when(restored.get("status_changed_at", ""), "status_changed_at")
    if restored.get("subscriber_id"):
        if not restored["subscriber_id"].isdigit() or not 0 < int(restored["subscriber_id"]) < 2**31:
            raise InvalidField(f"the subscriber_id {restored['subscriber_id'][:40]!r} is not one of ours: it must be "
                               f"a whole number from 1 to {2**31 - 1} (rename the column if it means something else)")
        row.subscriber_id = int(restored["subscriber_id"])
    row.history = _history(restored.get("status_history", ""))
    row.consents = _consents(restored.get("consent_records", ""))


def _parse(record: _Record, report: ImportReport) -> _Row | None:
    """One record checked field by field; None (and a row error) when it cannot be imported."""
    first, last, columns, values = record.first, record.last, record.columns, record.values

    def cell(index: int | None) -> str:
        return unneutralise(values[index]) if index is not None and index < len(values) else ""

    email = cell(columns.email).strip()
    if last > first and any(_row_like(line, record.delimiter) for v in values for line in v.splitlines()[1:]):
        report.invalid.append(RowNote(first, email, (
            f"a quote opened in this row is not closed, so lines {first + 1}–{last} were read into it; "
            "close the quote and import the file again")))
        return None
    if record.unclosed:
        report.invalid.append(RowNote(first, email, "a quote opened in this row is never closed; close it and import "
                                                    "the file again"))
        return None
    try:
        stored, key = normalise_address(email)
        name, changed = clean_text(cell(columns.name), "name", NAME_MAX)
        attributes: dict[str, str] = {}
        for index, title in columns.attributes:
            value, value_changed = clean_text(cell(index), f"value in column {title!r}", VALUE_MAX)
            changed = changed or value_changed
            if value:
                attributes[title] = value
        row = _Row(line=first, email=stored, key=key, name=name, attributes=attributes)
        _restore(row, {what: cell(index).strip() for what, index in columns.restored.items()})
    except (InvalidEmail, InvalidField) as exc:
        report.invalid.append(RowNote(first, email, str(exc)))
        return None
    if changed:
        report.cleaned.append(RowNote(first, email, "line breaks or tabs in a value were made spaces"))
    width = columns.width
    if len(values) > width and any(v.strip() for v in values[width:]):
        report.cleaned.append(RowNote(first, email, f"has {len(values)} cells where the header has {width}, so the last "
                                                    "were dropped; quote a value that holds a comma"))
    return row


def _merge(earlier: _Row, later: _Row, report: ImportReport) -> None:
    """The same person twice in one file: later values win, and a suppression is never lost."""
    how = "repeats" if earlier.email == later.email else "differs only in case (or Unicode form) from"
    report.merged.append(RowNote(later.line, later.email, f"{how} the address in row {earlier.line}; merged into it"))
    earlier.name = later.name or earlier.name
    earlier.attributes = {**earlier.attributes, **later.attributes}
    if earlier.status == ACTIVE and later.status in SUPPRESSED:
        earlier.status, earlier.source, earlier.status_changed_at = later.status, later.source, later.status_changed_at
    earlier.history = sorted({*earlier.history, *later.history}, key=lambda change: change.at)
    earlier.consents += [record for record in later.consents if record not in earlier.consents]


def _changes(row: _Row, source: str, at: dt.datetime) -> list[StatusChange]:
    """A new subscriber's history: as exported, ending in the row's own status."""
    if row.history and row.history[-1].status == row.status:
        return row.history
    return [*row.history, StatusChange(at=at, status=row.status, source=source)]


@dataclass
class _Chunk:
    """What applying one chunk writes: new subscribers (with their history and consents) and status events."""

    new_rows: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    restored: dict[str, tuple[list[StatusChange], list[dict[str, Any]]]] = field(default_factory=dict)
    wanted: dict[int, _Row] = field(default_factory=dict)  # a new subscriber's id in the store it came from


def _add_new(out: _Chunk, key: str, row: _Row, source: str, report: ImportReport, now: dt.datetime) -> None:
    changed_at = row.status_changed_at or now
    if row.subscriber_id in out.wanted:
        report.renumbered.append(RowNote(row.line, row.email, (
            f"subscriber_id {row.subscriber_id} is also in row {out.wanted[row.subscriber_id].line}, so this one gets a new id")))
    elif row.subscriber_id is not None:
        out.wanted[row.subscriber_id] = row
    out.new_rows.append(dict(email=row.email, email_key=key, name=row.name, attributes=row.attributes, status=row.status,
                             source=source, created_at=row.created_at or changed_at, updated_at=now,
                             status_changed_at=changed_at))
    out.restored[key] = (_changes(row, source, changed_at), row.consents)
    if row.status in SUPPRESSED:
        report.suppressions += 1
    else:
        report.added += 1


def _update_existing(conn: Connection, out: _Chunk, old: Any, row: _Row, source: str, report: ImportReport,
                     now: dt.datetime) -> None:
    """A subscriber already here: new values merged in; a suppression added, never one lifted."""
    repeated = old.updated_at == now  # written by an earlier chunk of this very file: counted there
    if repeated:
        report.merged.append(RowNote(row.line, row.email, "repeats an address earlier in the file; merged into it"))
    elif row.subscriber_id is not None and row.subscriber_id != old.id:
        report.renumbered.append(RowNote(row.line, row.email, (
            f"is subscriber {old.id} here, not {row.subscriber_id} as in the file: an unsubscribe link sent to it from "
            f"the old list names {row.subscriber_id}, which here is another subscriber or nobody (import into an "
            "empty store to keep links working)")))
    if old.status in SUPPRESSED:
        report.suppressed += not repeated  # never reactivated, never touched
        return
    attributes = {**(old.attributes or {}), **row.attributes}
    values: dict[str, Any] = {}
    if (row.name and row.name != old.name) or attributes != (old.attributes or {}):
        values.update(name=row.name or old.name, attributes=attributes)
    if row.status in SUPPRESSED:
        changed_at = row.status_changed_at or now
        values.update(status=row.status, source=source, status_changed_at=changed_at)
        out.events.append(dict(subscriber_id=old.id, at=changed_at, status=row.status, source=source))
        report.suppressions += 1
    elif not repeated:
        if values:
            report.updated += 1
        else:
            report.unchanged += 1
    if values:
        conn.execute(update(subscribers).where(subscribers.c.id == old.id).values(updated_at=now, **values))


def _apply_chunk(conn: Connection, chunk: dict[str, _Row], source: str, report: ImportReport, now: dt.datetime) -> None:
    existing = {
        row.email_key: row
        for row in conn.execute(select(subscribers).where(subscribers.c.email_key.in_(list(chunk))))
    }
    out = _Chunk()
    for key, row in chunk.items():
        old = existing.get(key)
        if old is None:
            _add_new(out, key, row, row.source or source, report, now)
        else:
            _update_existing(conn, out, old, row, row.source or source, report, now)
    if out.new_rows:
        _insert_new(conn, out.new_rows, out.wanted, report)
        ids = {found.email_key: found.id for found in conn.execute(
            select(subscribers.c.email_key, subscribers.c.id).where(subscribers.c.email_key.in_([r["email_key"] for r in out.new_rows]))
        )}
        consents: list[dict[str, Any]] = []
        for key, (changes, records) in out.restored.items():
            out.events.extend(dict(subscriber_id=ids[key], at=c.at, status=c.status, source=c.source) for c in changes)
            consents.extend(dict(record, subscriber_id=ids[key]) for record in records)
        if consents:
            conn.execute(insert(signups), consents)
    if out.events:
        conn.execute(insert(subscriber_events), out.events)


def _insert_new(conn: Connection, new_rows: list[dict[str, Any]], wanted: dict[int, _Row], report: ImportReport) -> None:
    """Insert new subscribers, each under the id it had in the store it was exported from
    when that id is free here: unsubscribe links name the id, so links sent before a
    move keep working in the new store."""
    taken = set(conn.execute(select(subscribers.c.id).where(subscribers.c.id.in_(list(wanted)))).scalars()) if wanted else set()
    keep = {row.key: number for number, row in wanted.items() if number not in taken}
    for number in taken:
        row = wanted[number]
        report.renumbered.append(RowNote(row.line, row.email, (
            f"subscriber_id {number} belongs to another subscriber here, so this one gets a new id: an unsubscribe "
            f"link sent to this address from the old list names {number}, that other subscriber here (import into "
            "an empty store to keep links working)")))
    with_id = [{**r, "id": keep[r["email_key"]]} for r in new_rows if r["email_key"] in keep]
    without = [r for r in new_rows if r["email_key"] not in keep]
    if with_id:
        conn.execute(insert(subscribers), with_id)
        if conn.dialect.name == "postgresql":  # explicit ids do not move the sequence: move it past them
            conn.execute(text("SELECT setval(pg_get_serial_sequence('subscribers', 'id'), (SELECT max(id) FROM subscribers))"))
    if without:
        conn.execute(insert(subscribers), without)


def import_csv(store: Store, path: Path, *, dry_run: bool = False,
               progress: Callable[[int, int], None] | None = None) -> ImportReport:
    """Import a CSV of subscribers; see the module docstring for the guarantees.

    `progress(bytes_read, file_size)` is called after each chunk.
    """
    report = ImportReport(dry_run=dry_run)
    size = path.stat().st_size if path.exists() else 0
    source = fit(f"import of {path.name}")
    handle = _open_text(path)
    with handle, store.engine.connect() as conn:
        transaction = for_writing(conn).begin()  # on SQLite: the write lock from the start
        try:
            now = utcnow()
            chunk: dict[str, _Row] = {}
            for record in _records(path, handle):
                row = _parse(record, report)
                if row is None:
                    continue
                if row.key in chunk:
                    _merge(chunk[row.key], row, report)
                    continue
                chunk[row.key] = row
                if len(chunk) >= CHUNK:
                    _apply_chunk(conn, chunk, source, report, now)
                    chunk = {}
                    if progress:
                        progress(handle.buffer.tell(), size)  # type: ignore[attr-defined]  # a text file opened by us: its bytes underneath
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


def _open_text(path: Path) -> io.TextIOWrapper:
    try:
        return open(path, encoding="utf-8-sig", newline="")  # closed by the caller
    except OSError as exc:
        raise CsvError(f"{path}: cannot be read ({exc.strerror})") from None
