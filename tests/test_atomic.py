"""All-or-nothing writes: a failed write leaves the old file and no debris, and says
which file and what to check in one line."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest

from newsletter.atomic import WriteFailed, write_atomic

from .conftest import run


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_full_disk_keeps_the_old_file_and_names_the_new_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "index.html"
    write_atomic(target, b"old")

    def no_space(src: str, dst: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(WriteFailed) as failed:
        write_atomic(target, b"new")
    assert str(failed.value) == (f"cannot write {target} (No space left on device); check that its folder is a folder "
                                 "you may write to, with free space")
    assert isinstance(failed.value, OSError), "callers that can do without a file still catch OSError"
    assert target.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_a_folder_that_takes_no_new_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(**kwargs: object) -> tuple[int, str]:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(WriteFailed, match=r"cannot write .*feed\.xml \(Read-only file system\)"):
        write_atomic(tmp_path / "feed.xml", b"x")


def test_an_interrupted_write_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(fd: int, mode: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fchmod", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "email.html", b"x")
    assert os.listdir(tmp_path) == []


def test_build_into_a_folder_that_is_a_file_is_one_line(project: Path) -> None:
    (project / "build").write_text("not a folder", encoding="utf-8")
    result = run("build")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"cannot make the folder {project / 'build'} (File exists); move away the file of that name" in result.output


def test_build_over_a_folder_where_a_page_goes_is_one_line(project: Path) -> None:
    (project / "build" / "2017-02-13-say-what-you-mean" / "email.html").mkdir(parents=True)
    result = run("build")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"cannot write {project / 'build' / '2017-02-13-say-what-you-mean' / 'email.html'} (Is a directory)" in result.output
    assert leftovers(project / "build" / "2017-02-13-say-what-you-mean") == []
