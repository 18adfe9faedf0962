"""Every module of newsletter at the floor or above, from the data `pytest --cov` left:
a total hides a module nobody tests. Prints each module below it and exits 1.

    python tests/coverage_floor.py [--floor 85]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

FLOOR = 85.0  # percent of lines and branches together, as coverage's own report counts them


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--floor", type=float, default=FLOOR)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "coverage.json"
        subprocess.run([sys.executable, "-m", "coverage", "json", "-q", "-o", str(report)], check=True)
        files = json.loads(report.read_text())["files"]
    low = sorted((data["summary"]["percent_covered"], name) for name, data in files.items()
                 if data["summary"]["percent_covered"] < args.floor)
    for percent, name in low:
        print(f"coverage: {name} {percent:.0f}% is below the floor of {args.floor:.0f}%")
    if not low:
        print(f"coverage: every one of {len(files)} modules at {args.floor:.0f}% or more")
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
