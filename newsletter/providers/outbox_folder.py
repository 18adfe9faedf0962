"""The outbox's files: each message appears whole under its final name, or not at all.

A message is written to a temporary file named for its writer, flushed to
disk, then renamed into place. A writer killed between the two leaves its
temporary file behind; the next writer in that folder removes it, once the
operating system vouches that its writer is gone: each writer holds a lock
(flock) on `.writers/<writer>` for as long as its process lives, and the
kernel releases it when the process dies, whatever its pid or host name.
So after kill -9 and a rerun the outbox holds exactly one .eml per delivered
recipient, and nothing else.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
import uuid
from pathlib import Path

from . import DeliveryFailed

_FULL = (errno.ENOSPC, errno.EDQUOT)
WRITERS = ".writers"
SWEEP_EVERY = 600.0  # seconds


class OutboxFolder:
    def __init__(self, root: Path):
        self.root = root
        self.writer = uuid.uuid4().hex[:16]
        self._lock: int | None = None
        self._swept: dict[Path, float] = {}  # folder → when it was last swept (time.monotonic)
        # A scheduler's workers share this writer: one of them takes the lock and sweeps at a time
        # (a second flock on our own lock file, from another thread, would wait for ever).
        self._guard = threading.Lock()

    # -- who is writing --------------------------------------------------
    def _hold_lock(self) -> None:
        """Take our writer lock; kept until this process ends (the kernel drops it even on kill -9)."""
        folder = self.root / WRITERS
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / self.writer
        while True:
            fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    break  # a sweeper may have taken the new file for a dead writer's and removed it
            except FileNotFoundError:
                pass
            os.close(fd)
        self._lock = fd
        for entry in folder.iterdir():  # the locks of writers gone: theirs is no longer needed to tell
            if entry.name != self.writer and self._gone(entry.name):
                entry.unlink(missing_ok=True)

    def _gone(self, writer: str) -> bool:
        """True when `writer`'s process has ended: its lock can be taken, or is gone with it."""
        path = self.root / WRITERS / writer
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)
        return True

    def _sweep(self, folder: Path) -> None:
        """Remove the temporary files that writers now gone left in `folder`."""
        gone: set[str] = set()
        with os.scandir(folder) as entries:
            for entry in entries:
                if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
                    continue
                writer = entry.name[:-4].rpartition(".")[2]
                if writer != self.writer and (writer in gone or self._gone(writer)):
                    gone.add(writer)
                    Path(entry.path).unlink(missing_ok=True)

    def _prepare(self, folder: Path) -> None:
        # Once per folder, and again now and then: a long-running scheduler outlives other writers.
        if time.monotonic() - self._swept.get(folder, -SWEEP_EVERY) < SWEEP_EVERY:
            return
        with self._guard:
            now = time.monotonic()
            if now - self._swept.get(folder, -SWEEP_EVERY) < SWEEP_EVERY:
                return  # another worker did it meanwhile
            if self._lock is None:
                self._hold_lock()
            folder.mkdir(parents=True, exist_ok=True)
            self._sweep(folder)
            self._swept[folder] = now

    # -- writing -----------------------------------------------------------
    def write(self, path: Path, data: bytes) -> None:
        """Put `data` at `path` whole and on disk, replacing any earlier copy.

        DeliveryFailed names the folder and what to do (a full disk is worth
        retrying later); nothing is left half-written.
        """
        try:
            self._prepare(path.parent)
            tmp = path.with_name(f".{path.name}.{self.writer}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
            try:
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fsync(fd)  # the bytes are on disk before the name is
                finally:
                    os.close(fd)
                os.replace(tmp, path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        except OSError as exc:
            where = self.root
            if exc.errno in _FULL:
                raise DeliveryFailed(f"the outbox {where} is full ({exc.strerror}); free some space, "
                                     "then run the scheduler again", retryable=True) from None
            raise DeliveryFailed(f"cannot write to the outbox {where} ({exc.strerror})") from None
