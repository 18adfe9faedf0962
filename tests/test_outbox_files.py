"""The outbox on a real disk: killed between write and rename, and full."""

from __future__ import annotations

import email
import email.policy
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from newsletter.config import Settings
from newsletter.store import Store
from newsletter.store.schema import deliveries, subscribers

from .conftest import run

LEASE = 1.5  # seconds
# A scheduler that stops dead after its Nth message is written but before it is renamed into place.
STOPS_BEFORE_RENAME = """
import os, sys, time
real, seen, marker, stop_at = os.replace, [], sys.argv[1], int(sys.argv[2])
def replace(src, dst, *args, **kwargs):
    if str(src).endswith(".tmp"):
        seen.append(src)
        if len(seen) == stop_at:
            open(marker, "w").close()
            time.sleep(3600)
    return real(src, dst, *args, **kwargs)
os.replace = replace
from newsletter.cli import main
sys.argv = ["newsletter", "scheduler", "--once"]
main()
"""


def queue_now() -> None:
    result = run("queue", "say-what-you-mean", "--at", "now", "--yes")
    assert result.exit_code == 0, result.output


def readers(store: Store) -> set[int]:
    with store.engine.connect() as conn:
        return set(conn.execute(select(subscribers.c.id).where(subscribers.c.status == "active")).scalars())


def delivered_files(settings: Settings) -> dict[int, Path]:
    return {int(p.stem): p for p in settings.outbox_path.glob("send-1/*.eml")}


def wait_for(path: Path, process: subprocess.Popen[str], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, f"the scheduler ended first: {process.communicate()[0]}"
        assert time.monotonic() < deadline, "the scheduler never got there"
        time.sleep(0.01)


@pytest.mark.parametrize("stop_at", [1, 7, 13])
def test_a_kill_between_write_and_rename_leaves_one_eml_per_reader_and_no_temporary_file(
    newsletter_with_list: Settings, store: Store, tmp_path: Path, stop_at: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_LEASE_SECONDS", str(LEASE))  # where claims are leased: a rerun may take over soon
    monkeypatch.setenv("NEWSLETTER_CONCURRENCY", "1")  # one writer, so exactly one message is caught half-done
    queue_now()
    marker = tmp_path / "stopped"
    victim = subprocess.Popen([sys.executable, "-c", STOPS_BEFORE_RENAME, str(marker), str(stop_at)],
                              cwd=newsletter_with_list.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(marker, victim)
        left = list(newsletter_with_list.outbox_path.rglob(".*.tmp"))
        assert len(left) == 1, "the victim stopped with a message written and not yet renamed"
    finally:
        if victim.poll() is None:
            os.kill(victim.pid, signal.SIGKILL)
        victim.communicate()
    time.sleep(LEASE + 0.5)  # its lease runs out
    assert left[0].exists()
    half_sent = left[0].name.split(".")[1]  # ".00000007.eml.<writer>.tmp": delivery 7
    first_id = email.message_from_bytes(left[0].read_bytes(), policy=email.policy.default)["Message-ID"]

    rerun = subprocess.run([sys.executable, "-m", "newsletter", "scheduler", "--once"], cwd=newsletter_with_list.root,
                           capture_output=True, text=True, timeout=120, check=False)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert not list(newsletter_with_list.outbox_path.rglob("*.tmp")), "recovery removed the dead writer's temporary file"
    files = delivered_files(newsletter_with_list)
    with store.engine.connect() as conn:
        sent = dict(conn.execute(select(deliveries.c.id, deliveries.c.subscriber_id).where(deliveries.c.status == "sent")).all())
    assert set(files) == set(sent), "exactly one .eml per delivered recipient"
    assert set(sent.values()) == readers(store)
    again = email.message_from_bytes(files[int(half_sent)].read_bytes(), policy=email.policy.default)
    assert again["Message-ID"] == first_id, "a copy written again after a crash is the same message"


@pytest.fixture
def small_disk(newsletter_with_list: Settings) -> Iterator[Path]:
    """The outbox on a real 64 KiB tmpfs: room for two messages, not three."""
    outbox = newsletter_with_list.outbox_path
    outbox.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(outbox)], capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root?): the full-disk test needs one")
    try:
        yield outbox
    finally:
        subprocess.run(["umount", "-l", str(outbox)], check=False)


def test_a_full_outbox_gives_one_clear_line_and_loses_nothing(newsletter_with_list: Settings, store: Store, small_disk: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_RETRY_AFTER", "0.5")  # where deferred deliveries are retried: soon
    queue_now()
    result = run("scheduler", "--once")
    output = result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), output
    assert "Traceback" not in output
    full = sorted({line for line in output.splitlines() if "is full" in line})  # the same line for each attempt
    assert len(full) == 1 and str(small_disk) in full[0] and "free some space" in full[0], output
    assert "@" not in full[0], "no subscriber's address in the error"
    written = delivered_files(newsletter_with_list)
    assert 1 <= len(written) < len(readers(store))
    assert not list(small_disk.rglob("*.tmp")), "no half-written message"
    with store.engine.connect() as conn:
        sent = set(conn.execute(select(deliveries.c.id).where(deliveries.c.status == "sent")).scalars())
    assert sent <= set(written), "nothing is recorded as delivered without its file"

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    for _ in range(40):  # the deferred ones go at their retry time, a second or two away
        run("scheduler", "--once")
        if len(delivered_files(newsletter_with_list)) == len(readers(store)):
            break
        time.sleep(0.25)
    files = delivered_files(newsletter_with_list)
    with store.engine.connect() as conn:
        sent_to = set(conn.execute(select(deliveries.c.subscriber_id).where(deliveries.c.status == "sent")).scalars())
    assert sent_to == readers(store) and len(files) == len(sent_to)


def test_a_temporary_file_is_removed_only_once_its_writer_is_gone(tmp_path: Path) -> None:
    from newsletter.providers.outbox_folder import OutboxFolder

    send = tmp_path / "outbox" / "send-1"
    alive = OutboxFolder(tmp_path / "outbox")
    alive.write(send / "00000001.eml", b"first")
    in_progress = send / f".00000002.eml.{alive.writer}.tmp"  # as if `alive` were writing it right now
    in_progress.write_bytes(b"half")

    OutboxFolder(tmp_path / "outbox").write(send / "00000003.eml", b"third")
    assert in_progress.exists(), "a live writer's file is never taken for a leftover"

    assert alive._lock is not None
    os.close(alive._lock)  # what the kernel does when its process dies
    OutboxFolder(tmp_path / "outbox").write(send / "00000004.eml", b"fourth")
    assert not in_progress.exists()
    assert sorted(p.name for p in send.iterdir()) == ["00000001.eml", "00000003.eml", "00000004.eml"]
