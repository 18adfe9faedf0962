"""Outside a newsletter every command that needs one says so and creates nothing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from newsletter.cli import cli

MESSAGE = "no newsletter.toml here or in a parent folder; run `newsletter init`"
# Commands that need no newsletter.
FREE = {("init",)}


def commands(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from commands(command, (*prefix, name))
        elif (*prefix, name) not in FREE:
            yield (*prefix, name), command


def arguments(command: click.Command, outside: Path) -> list[str]:
    """Plausible arguments for any command, so that only the missing newsletter can stop it."""
    args: list[str] = []
    for param in command.params:
        value = "1" if isinstance(param.type, click.types.IntParamType) else str(outside / "list.csv")
        if isinstance(param, click.Argument) and param.required:
            args.append(value)
        elif isinstance(param, click.Option) and param.required:
            args += [param.opts[0], "now" if param.name == "when" else "editor@example.org"]
    for flag in ("--yes", "--once", "--no-open", "--dry-run"):
        if any(flag in getattr(param, "opts", ()) for param in command.params):
            args.append(flag)
    return args


ALL = sorted(commands())


def files_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


@pytest.mark.parametrize(("path", "command"), ALL, ids=[" ".join(path) for path, _ in ALL])
def test_command_outside_a_newsletter_fails_clearly_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: tuple[str, ...], command: click.Command,
) -> None:
    for name in list(os.environ):
        if name.startswith(("NEWSLETTER_", "SENDGRID_")):
            monkeypatch.delenv(name)
    here = tmp_path / "not-a-newsletter" / "deeper"
    here.mkdir(parents=True)
    outside = tmp_path / "other"
    outside.mkdir()
    (outside / "list.csv").write_text("email\nada@example.com\n", encoding="utf-8")
    before = files_under(tmp_path)
    monkeypatch.chdir(here)
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("a server started outside a newsletter"))
    result = CliRunner().invoke(cli, [*path, *arguments(command, outside)])
    assert result.exit_code == 1, result.output
    assert result.output.strip() == f"Error: {MESSAGE}"
    assert files_under(tmp_path) == before


def test_every_command_is_checked() -> None:
    names = {" ".join(path) for path, _ in ALL}
    assert {"build", "demo", "queue", "scheduler", "subscribers import", "subscribers count", "serve", "preview"} <= names


def test_a_subfolder_of_a_newsletter_finds_it(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project / "issues")
    result = CliRunner().invoke(cli, ["subscribers", "add", "ada@example.com"])
    assert result.exit_code == 0, result.output
    assert (project / ".newsletter").is_dir() and not (project / "issues" / ".newsletter").exists()
