"""Every command's help shows examples of its use."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from newsletter.cli import cli

ELSEWHERE: set[tuple[str, ...]] = set()


def every_command(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield prefix
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from every_command(command, (*prefix, name))
        elif (*prefix, name) not in ELSEWHERE:
            yield (*prefix, name)


@pytest.mark.parametrize("path", list(every_command()), ids=lambda p: " ".join(p) or "newsletter")
def test_help_shows_examples_that_name_the_command(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"], terminal_width=100)
    assert result.exit_code == 0
    examples = result.output.split("Examples:", 1)
    assert len(examples) == 2, result.output
    lines = [line.strip() for line in examples[1].splitlines() if line.strip().startswith(("newsletter", "NEWSLETTER_"))]
    assert lines and any(" ".join(("newsletter", *path)) in line for line in lines), examples[1]
