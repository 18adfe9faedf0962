"""CSV export of the list: safe to open in any spreadsheet, and importable back as it was.

Every cell, the header's included, is neutralised when a spreadsheet would run
it as a formula. The stored columns come first and always hold the stored
values: an attribute named like one of them is written as a later column,
which import keeps as an attribute (the first column of each kind wins).

Besides the current status, each row carries the subscriber's whole status
history and their consent records (confirmed signups), as JSON, so that a
list moved to another store still says when and from where each status was
set, and who agreed to receive it, when and from where.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from .db import Store
from .schema import STATUSES, subscribers
from .signups import Signup, consents_of
from .subscribers import StatusChange, histories

CHUNK = 1000
# subscriber_id lets an import into an empty store keep each id, which unsubscribe links name.
COLUMNS = ["email", "name", "status", "source", "created_at", "status_changed_at", "subscriber_id",
           "status_history", "consent_records"]
# A cell starting with one of these is run as a formula by spreadsheets.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: str) -> str:
    """The value with a ' in front when a spreadsheet would run it as a formula.

    A value that already starts with ' before such a character gets one more, so
    that import, which takes exactly one away (unneutralise), gives it back unchanged.
    """
    return "'" + value if value.lstrip("'").startswith(FORMULA_START) else value


def unneutralise(value: str) -> str:
    """Undo neutralise(): export then import gives back the same data."""
    return value[1:] if value.startswith("'") and value.lstrip("'").startswith(FORMULA_START) else value


def when(moment: dt.datetime | None) -> str:
    """A stored (naive UTC) time as export writes it."""
    return moment.isoformat(timespec="seconds") if moment else ""


def history_cell(changes: list[StatusChange]) -> str:
    return _json([{"at": when(c.at), "status": c.status, "source": c.source} for c in changes])


def consents_cell(records: list[Signup]) -> str:
    return _json([{"requested_at": when(r.requested_at), "form": r.form, "requested_ip": r.requested_ip,
                   "confirmed_at": when(r.confirmed_at), "confirmed_ip": r.confirmed_ip or ""} for r in records])


def _json(items: list[dict[str, Any]]) -> str:
    return json.dumps(items, ensure_ascii=False, separators=(",", ":")) if items else ""


def export_csv(store: Store, path: Path, statuses: tuple[str, ...] = STATUSES, *, excel: bool = False) -> int:
    """Write the subscribers with these statuses to `path`; returns how many.

    Times are UTC. `excel` writes a UTF-8 byte order mark, which spreadsheet
    programs need to read the file as UTF-8.
    """
    chosen = subscribers.c.status.in_(statuses)
    with store.engine.connect() as conn:
        extra: dict[str, None] = {}
        for (attributes,) in conn.execute(select(subscribers.c.attributes).where(chosen).execution_options(yield_per=CHUNK)):
            for key in attributes or {}:
                extra.setdefault(key, None)
        count = 0
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", encoding="utf-8-sig" if excel else "utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([neutralise(c) for c in [*COLUMNS, *extra]])
            last = 0
            while rows := conn.execute(select(subscribers).where(chosen, subscribers.c.id > last)
                                       .order_by(subscribers.c.id).limit(CHUNK)).all():
                ids = [row.id for row in rows]
                changes, consents = histories(conn, ids), consents_of(conn, ids)
                for row in rows:
                    stored = [
                        row.email, row.name, row.status, row.source, when(row.created_at), when(row.status_changed_at),
                        str(row.id), history_cell(changes[row.id]), consents_cell(consents[row.id]),
                    ]
                    attributes = row.attributes or {}
                    writer.writerow([neutralise(v) for v in stored] + [neutralise(str(attributes.get(k, ""))) for k in extra])
                count += len(rows)
                last = ids[-1]
        tmp.replace(path)
    return count
