"""The demo ends by saying where its results are and what to run next."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from newsletter.cli import cli


def test_demo_ends_with_where_the_emails_are_and_what_to_run_next(project: Path) -> None:
    result = CliRunner().invoke(cli, ["demo"])
    assert result.exit_code == 0, result.output
    tail = result.output.split("What to look at, and what to do next:")[1]
    folder = re.search(r"^\s+(\S+)/\s+one \.eml file per subscriber", tail, re.MULTILINE)
    assert folder, tail
    assert len(list((project / folder.group(1)).glob("*.eml"))) >= 24
    email_html = re.search(r"(build/\S+/email\.html)", tail)
    assert email_html and (project / email_html.group(1)).is_file()
    assert re.search(r"^\s+newsletter preview\s", tail, re.MULTILINE)
    assert re.search(r"^\s+newsletter serve\s.*http://127\.0\.0\.1:8000", tail, re.MULTILINE)
    again = CliRunner().invoke(cli, ["demo"]).output
    assert "not sending it twice" in again and f"{folder.group(1)}/" in again
