"""A bad essay is reported with its file, line and a fix, and never stops the others."""

from __future__ import annotations

from pathlib import Path

import pytest


from click.testing import CliRunner

from newsletter.build import build
from newsletter.cli import cli

from .conftest import override_template
from newsletter.config import Settings


def write(settings: Settings, name: str, text: str) -> Path:
    path = settings.issues_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ('---\ntitle: "Fine"\ndate: 2017-05-01\nsummary: [unclosed\n---\nBody\n', 4, "not valid YAML"),
        ("---\ndate: 2017-05-01\n---\nBody\n", 3, "no 'title'"),
        ("---\ntitle: Fine\ndate: 2017-13-45\n---\nBody\n", 3, "YYYY-MM-DD"),
        ("---\ntitle: Fine\ndate: 2017-05-01\nauthor: Me\n---\nBody\n", 4, "unknown front matter key 'author'"),
        ("No front matter at all.\n", 1, "no front matter"),
        (f"---\ntitle: {'T' * 501}\ndate: 2017-05-01\n---\nBody\n", 2, "501 characters long"),
        ('---\ntitle: "Nul\\0here"\ndate: 2017-05-01\n---\nBody\n', 2, "U+0000"),
        ('---\ntitle: Fine\ndate: 2017-05-01\nsummary: "a\\vb"\n---\nBody\n', 4, "U+000B"),
        (f"---\ntitle: Fine\ndate: 2017-05-01\nslug: {'s' * 201}\n---\nBody\n", 4, "slug is 201 characters long"),
    ],
    ids=["broken-yaml", "missing-title", "bad-date", "unknown-key", "no-front-matter", "long-title", "nul-title",
         "control-summary", "long-slug"],
)
def test_bad_front_matter_names_file_and_line_and_others_still_build(
    settings: Settings, text: str, line: int, words: str
) -> None:
    write(settings, "2017-05-01-broken.md", text)
    report = build(settings)
    assert len(report.errors) == 1
    message = str(report.errors[0])
    assert f"2017-05-01-broken.md:{line}:" in message
    assert words in message
    assert len(report.built) == 7, "the seven good essays must still build"
    assert not (settings.output_path / "2017-05-01-broken").exists()


def test_duplicate_slug_refuses_both_essays(settings: Settings) -> None:
    write(settings, "2017-05-01-one.md", "---\ntitle: One\ndate: 2017-05-01\nslug: same\n---\nOne\n")
    write(settings, "2017-05-02-two.md", "---\ntitle: Two\ndate: 2017-05-02\nslug: same\n---\nTwo\n")
    report = build(settings)
    messages = sorted(str(e) for e in report.errors)
    assert len(messages) == 2
    assert "duplicate slug 'same'" in messages[0] and "2017-05-02-two.md" in messages[0]
    assert not (settings.output_path / "same").exists()


def test_cli_build_exits_non_zero_and_prints_the_error(settings: Settings) -> None:
    write(settings, "2017-05-01-broken.md", "---\ntitle: Fine\ndate: someday\n---\nBody\n")
    result = CliRunner().invoke(cli, ["build"])
    assert result.exit_code == 1
    assert "2017-05-01-broken.md:3: date 'someday' is not a date" in result.output
    assert "Built 7 issue(s)" in result.output


def test_an_essay_that_breaks_keeps_its_last_good_output(settings: Settings) -> None:
    build(settings)
    essay = settings.issues_path / "2017-02-20-we-are-the-union.md"
    essay.write_text(essay.read_text(encoding="utf-8").replace("title:", "titel:"), encoding="utf-8")
    report = build(settings)
    assert "unknown front matter key 'titel'" in str(report.errors[0])
    assert (settings.output_path / "2017-02-20-we-are-the-union" / "email.html").is_file()
    essay.write_text(essay.read_text(encoding="utf-8").replace("titel:", "title:"), encoding="utf-8")
    assert build(settings).ok


def test_a_broken_template_names_its_file_and_line(settings: Settings) -> None:
    template = override_template(settings, "email.html.j2")
    lines = template.read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2] + " {% if %}"
    template.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["build"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "email.html.j2:3:" in result.output


def test_running_outside_a_newsletter_folder_says_where_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["build"])
    assert result.exit_code == 1
    assert "no newsletter.toml here or in a parent folder; run `newsletter init`" in result.output
    assert not list(tmp_path.iterdir())
