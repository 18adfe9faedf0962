"""CSV import: rows per second and peak memory (RSS) at 10,000 and 100,000 rows.
Prints figures only. Goal: streaming, i.e. peak RSS at 100k within 10% of that at 10k.

    python benchmarks/import.py
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def child(rows: int, folder: Path) -> None:
    """Import `rows` generated rows into a fresh SQLite store in this process and report."""
    from newsletter.config import Settings
    from newsletter.store import open_store
    from newsletter.store.csvio import import_csv

    csv_path = folder / f"list-{rows}.csv"
    with open(csv_path, "w", encoding="utf-8") as handle:
        handle.write("email,name,town\n")
        for n in range(rows):
            handle.write(f"reader{n}@example.{('com', 'org', 'net')[n % 3]},Reader {n},Town {n % 97}\n")
    store = open_store(Settings(root=folder, database_url=f"sqlite:///{folder / f'db-{rows}.sqlite'}"))
    start = time.perf_counter()
    report = import_csv(store, csv_path)
    elapsed = time.perf_counter() - start
    assert report.added == rows
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rows": rows, "seconds": elapsed, "peak_rss_mib": peak_kib / 1024}))


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), Path(sys.argv[3]))
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rows in (10_000, 100_000):
            out = subprocess.run([sys.executable, __file__, "--child", str(rows), tmp], check=True,
                                 capture_output=True, text=True).stdout
            results[rows] = json.loads(out.strip().splitlines()[-1])
    for rows, r in results.items():
        print(f"{rows:>7} rows: {rows / r['seconds']:,.0f} rows/s, peak RSS {r['peak_rss_mib']:.1f} MiB")
    growth = results[100_000]["peak_rss_mib"] / results[10_000]["peak_rss_mib"] - 1
    print(f"peak RSS growth from 10k to 100k rows: {growth:+.1%} (goal within 10%)")


if __name__ == "__main__":
    main()
