"""Writes that are all or nothing: a reader sees the old file or the new one, never half."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from .errors import NewsletterError

# mkstemp makes private files; published files get the usual permissions.
_UMASK = os.umask(0)
os.umask(_UMASK)
_MODE = 0o666 & ~_UMASK


class WriteFailed(NewsletterError, OSError):
    """A file or folder could not be written; str() names it, why, and what to check.
    Still an OSError, for callers that only skip a write they can do without."""

    def __str__(self) -> str:
        return str(self.strerror)


def _failed(path: Path, exc: OSError) -> WriteFailed:
    reason = exc.strerror or type(exc).__name__
    return WriteFailed(exc.errno, f"cannot write {path} ({reason}); check that its folder is a folder you may write to, "
                                  "with free space")


def make_folder(path: Path) -> None:
    """`path` and its parents as folders; WriteFailed naming it when one is a file or cannot be made."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise WriteFailed(exc.errno, f"cannot make the folder {path} ({reason}); move away the file of that name "
                                     "or make its parent writable") from None


def write_atomic(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Replace `path` with `data` through a temporary file and a rename; WriteFailed
    (naming `path`) if it cannot, with `path` as it was and no temporary file left.

    `durable` also flushes the bytes to disk before the rename, for files that
    cannot be made again (a delivered message), at the cost of an fsync.
    """
    make_folder(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _failed(path, exc) from None
    try:
        os.fchmod(fd, _MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _failed(path, exc) from None
        raise
