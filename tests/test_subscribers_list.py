"""`subscribers list` fits the terminal it is shown in, and gives scripts every field as JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.cells import cell_len

from newsletter.cli import cli

PEOPLE = [
    ("ada@example.com", "Ada Lovelace"),
    ("wide@example.org", "日本語の名前とても長い名前です、さらに長く続きます"),
    ("a.rather.long.address.for.a.reader@subdomain.example.net", "Bartholomew Montgomery-Fotheringham of the Long Names"),
    ("short@example.org", ""),
]


@pytest.fixture
def listed(project: Path) -> Path:
    for email, name in PEOPLE:
        assert CliRunner().invoke(cli, ["subscribers", "add", email, "--name", name]).exit_code == 0
    assert CliRunner().invoke(cli, ["subscribers", "remove", "short@example.org"]).exit_code == 0
    return project


@pytest.mark.parametrize("columns", [40, 60, 80, 200])
def test_list_fits_the_terminal_width(listed: Path, columns: int) -> None:
    result = CliRunner().invoke(cli, ["subscribers", "list", "--status", "all"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 + len(PEOPLE)
    assert all(cell_len(line) <= columns for line in lines), [cell_len(line) for line in lines]
    assert lines[0].split() == ["email", "status", "name"]
    if columns >= 80:  # room enough: every address whole
        assert all(any(line.startswith(email) for line in lines) for email, _ in PEOPLE)
    if columns == 200:
        assert any(line.endswith("of the Long Names") for line in lines)
    else:
        assert any(line.endswith("…") for line in lines)


def test_list_shows_only_the_status_asked_for(listed: Path) -> None:
    output = CliRunner().invoke(cli, ["subscribers", "list"], env={"COLUMNS": "120"}).output
    assert "ada@example.com" in output and "short@example.org" not in output


def test_list_json_gives_every_field_whole(listed: Path) -> None:
    result = CliRunner().invoke(cli, ["subscribers", "list", "--status", "all", "--json"], env={"COLUMNS": "40"})
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert [(r["email"], r["name"]) for r in rows] == PEOPLE
    assert {r["status"] for r in rows} == {"active", "unsubscribed"}
    assert all(r["created_at"].endswith("Z") and isinstance(r["attributes"], dict) for r in rows)
    assert json.loads(CliRunner().invoke(cli, ["subscribers", "list", "--status", "bounced", "--json"]).stdout) == []
