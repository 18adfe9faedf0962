"""CSV export of the list: safe to open in any spreadsheet, and importable back as it was.

Every cell, the header's included, is neutralised when a spreadsheet would run
it as a formula. The stored columns come first and always hold the stored
values: an attribute named like one of them is written as a later column,
which import keeps as an attribute (the first column of each kind wins).
"""

from __future__ import annotations

import csv
from pathlib import Path

from sqlalchemy import select

from .db import Store
from .schema import STATUSES, subscribers

CHUNK = 1000
# subscriber_id lets an import into an empty store keep each id, which unsubscribe links name.
COLUMNS = ["email", "name", "status", "source", "created_at", "status_changed_at", "subscriber_id"]
# A cell starting with one of these is run as a formula by spreadsheets.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_START) else value


def export_csv(store: Store, path: Path, statuses: tuple[str, ...] = STATUSES, *, excel: bool = False) -> int:
    """Write the subscribers with these statuses to `path`; returns how many.

    Times are UTC. `excel` writes a UTF-8 byte order mark, which spreadsheet
    programs need to read the file as UTF-8.
    """
    query = select(subscribers).where(subscribers.c.status.in_(statuses)).order_by(subscribers.c.id)
    with store.engine.connect() as conn:
        extra: dict[str, None] = {}
        for (attributes,) in conn.execute(
            select(subscribers.c.attributes).where(subscribers.c.status.in_(statuses)).execution_options(yield_per=CHUNK)
        ):
            for key in attributes or {}:
                extra.setdefault(key, None)
        count = 0
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", encoding="utf-8-sig" if excel else "utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([neutralise(c) for c in [*COLUMNS, *extra]])
            for row in conn.execute(query.execution_options(yield_per=CHUNK)):
                stored = [
                    row.email, row.name, row.status, row.source,
                    row.created_at.isoformat(timespec="seconds"), row.status_changed_at.isoformat(timespec="seconds"),
                    str(row.id),
                ]
                attributes = row.attributes or {}
                writer.writerow([neutralise(v) for v in stored] + [neutralise(str(attributes.get(k, ""))) for k in extra])
                count += 1
        tmp.replace(path)
    return count
