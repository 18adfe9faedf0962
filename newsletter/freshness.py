"""Whether a build would change nothing, known from file stamps alone.

`newsletter build` with nothing changed must start as fast as `--help`, so it
cannot afford to import the renderer or read the essays. After a clean build
the CLI records a fingerprint of what the build read and wrote: the settings,
the size and modification time of every essay, template and build module, and
of every output file. If the fingerprint still matches, nothing can differ.

An input changed within the timestamp resolution of the build that recorded
the stamp could look unchanged ("racy" stamps, as git calls them), so a stamp
recorded less than RACY_NS after an input's modification time is never trusted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

from .atomic import write_atomic
from .config import SECRET_ENV, Settings

STAMP = "build-stamp.json"
VERSION = 1
RACY_NS = 2_000_000_000  # FAT and some network filesystems keep 2-second times
PACKAGE = Path(__file__).parent


def _stamp_path(settings: Settings) -> Path:
    # In the private data folder: build/ is published as it stands.
    return settings.data_path / STAMP


def _walk(folder: Path) -> list[tuple[str, int, int]]:
    found = []
    for base, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(base, name)
            try:
                info = os.stat(path)
            except OSError:
                continue
            found.append((os.path.relpath(path, folder), info.st_size, info.st_mtime_ns))
    return found


def fingerprint(settings: Settings) -> tuple[str, int]:
    """(a digest of everything a build reads and writes, the newest modification time among its inputs)."""
    values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)
              if f.name not in SECRET_ENV and f.name != "warnings"}
    parts: dict[str, object] = {"version": VERSION, "settings": {k: str(v) for k, v in values.items()}}
    newest = 0
    for label, folder in (("issues", settings.issues_path), ("templates", settings.templates_path),
                          ("packaged", PACKAGE / "templates"), ("code", PACKAGE), ("output", settings.output_path)):
        files = _walk(folder) if label != "code" else [
            (p.name, stat.st_size, stat.st_mtime_ns) for p in sorted(PACKAGE.glob("*.py")) for stat in (p.stat(),)
        ]
        parts[label] = files
        if label != "output":  # our own writes are not racy: only what the editor may change meanwhile
            newest = max([newest, *(mtime for _, _, mtime in files)])
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    return digest, newest


def unchanged_issues(settings: Settings) -> int | None:
    """How many issues the last clean build left, if nothing has changed since; else None."""
    try:
        recorded = json.loads(_stamp_path(settings).read_text(encoding="utf-8"))
        if recorded.get("version") != VERSION:
            return None
        digest, newest = fingerprint(settings)
        if digest != recorded["digest"] or newest >= int(recorded["at"]) - RACY_NS:
            return None
        return int(recorded["issues"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record(settings: Settings, issues: int) -> None:
    """Remember a clean build that left `issues` issues; call it after every file is written."""
    digest, _ = fingerprint(settings)
    data = {"version": VERSION, "digest": digest, "at": time.time_ns(), "issues": issues}
    with contextlib.suppress(OSError):  # a stamp is only a shortcut; the next build checks everything again
        write_atomic(_stamp_path(settings), json.dumps(data).encode())
