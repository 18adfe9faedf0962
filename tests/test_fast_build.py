"""A build with nothing to do is as quick as --help, and never wrong: any change to an essay,
template, setting or output is seen. Neither imports premailer or parses the stylesheet."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli

HEAVY = ("premailer", "cssutils", "jinja2", "markdown_it", "frontmatter", "sqlalchemy")
ESSAY = "2017-02-13-say-what-you-mean"


def build() -> str:
    result = CliRunner().invoke(cli, ["build"])
    assert result.exit_code == 0, result.output
    return result.stdout


def age_inputs(project: Path, seconds: int = 60) -> None:
    """Make every essay look saved a while ago, as it is when an editor builds again later."""
    past = time.time_ns() - seconds * 1_000_000_000
    for path in (project / "issues").iterdir():
        os.utime(path, ns=(past, past))


@pytest.fixture
def built(project: Path) -> Path:
    age_inputs(project)
    assert "Built 7 issue(s)" in build()
    return project


def imported_modules(project: Path, *args: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEWSLETTER_", "SENDGRID_"))}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "newsletter", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in done.stderr.splitlines() if line.startswith("import time:")}


def test_no_change_build_and_help_import_no_renderer(built: Path) -> None:
    for args in (("--help",), ("build",)):
        modules = imported_modules(built, *args)
        assert "click" in modules
        assert not set(HEAVY) & modules, (args, set(HEAVY) & modules)


def test_no_change_build_reports_every_issue_unchanged(built: Path) -> None:
    assert "Built 0 issue(s), 7 unchanged" in build()
    assert "Built 0 issue(s), 7 unchanged" in build()


def test_an_edited_essay_is_rebuilt(built: Path) -> None:
    path = built / "issues" / f"{ESSAY}.md"
    path.write_text(path.read_text(encoding="utf-8") + "\nA new closing line.\n", encoding="utf-8")
    assert "Built 1 issue(s), 6 unchanged" in build()
    assert "A new closing line." in (built / "build" / ESSAY / "email.txt").read_text(encoding="utf-8")


def test_an_edit_of_the_same_size_in_the_same_instant_is_still_seen(project: Path) -> None:
    path = project / "issues" / f"{ESSAY}.md"
    os.utime(path)  # saved just now
    build()  # the essay's time is that recent: the stamp is "racy" and must not be trusted
    before = path.stat()
    text = path.read_text(encoding="utf-8")
    changed = text.replace("chimney sweep", "chimney sweeP", 1)
    assert len(changed.encode()) == len(text.encode()) and changed != text
    path.write_text(changed, encoding="utf-8")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size, same time: only the bytes differ
    assert "Built 1 issue(s)" in build()
    assert "chimney sweeP" in (project / "build" / ESSAY / "email.txt").read_text(encoding="utf-8")


def test_a_changed_setting_template_or_output_is_rebuilt(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SITE_NAME", "Another Name")
    assert "Built 7 issue(s)" in build()
    age_inputs(built)
    assert "7 unchanged" in build()
    (built / "templates").mkdir()
    own = built / "templates" / "email.txt.j2"
    own.write_text("Only this\n{{ unsubscribe_url }}\n", encoding="utf-8")
    past = time.time_ns() - 60_000_000_000
    os.utime(own, ns=(past, past))
    assert "Built 7 issue(s)" in build()
    page = built / "build" / ESSAY / "index.html"
    page.write_text("vandalised", encoding="utf-8")
    assert "Built 1 issue(s)" in build()
    assert "vandalised" not in page.read_text(encoding="utf-8")
    (built / "build" / "feed.xml").unlink()
    build()
    assert (built / "build" / "feed.xml").is_file()


def test_a_broken_essay_is_reported_on_every_build(built: Path) -> None:
    path = built / "issues" / f"{ESSAY}.md"
    path.write_text(path.read_text(encoding="utf-8").replace("date: 2017-02-13", "date: someday"), encoding="utf-8")
    age_inputs(built)
    for _ in range(2):
        result = CliRunner().invoke(cli, ["build"])
        assert result.exit_code == 1 and "someday" in result.output
