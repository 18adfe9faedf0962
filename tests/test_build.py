"""The build turns the sample essays into finished issues a subscriber can read."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest



from newsletter.build import build
from newsletter.config import Settings
from newsletter.essays import read_essays
from newsletter.personalize import UNSUBSCRIBE_PLACEHOLDER

from .conftest import HARD_SLUG, SHARED, override_template, write_essay
from .textutil import fold, markdown_paragraphs, text_part_prose, visible_text

DEBRIS = ("corbyn crowd", "Benn 2", "LikeShow More Reactions")
GOLDEN = Path(__file__).parent / "golden"
GOLDEN_SLUG = "2017-02-13-say-what-you-mean"


@pytest.fixture
def built(settings: Settings) -> Settings:
    report = build(settings)
    assert report.ok, report.errors
    return settings


def issue_dirs(settings: Settings) -> list[Path]:
    return sorted(p for p in settings.output_path.iterdir() if p.is_dir())


def test_the_sample_newsletter_has_seven_issues_dated_2017_in_order(settings: Settings) -> None:
    essays, errors = read_essays(settings.issues_path)
    assert not errors
    assert len(essays) == 7
    assert all(e.date.year == 2017 for e in essays)
    titles = [e.title for e in sorted(essays, key=lambda e: e.date)]
    assert titles[0] == "Dear Labour Councillor…"
    assert titles[-1].startswith("Happy Families?")


def test_every_paragraph_appears_in_the_html_and_the_text_part(built: Settings) -> None:
    essays, _ = read_essays(built.issues_path)
    for essay in essays:
        out = built.output_path / essay.slug
        html = visible_text((out / "email.html").read_text(encoding="utf-8"))
        text = text_part_prose((out / "email.txt").read_text(encoding="utf-8"))
        web = visible_text((out / "index.html").read_text(encoding="utf-8"))
        for paragraph in markdown_paragraphs(essay.body):
            assert paragraph in html, f"{essay.slug}: missing from email.html: {paragraph[:60]}"
            assert paragraph in text, f"{essay.slug}: missing from email.txt: {paragraph[:60]}"
            assert paragraph in web, f"{essay.slug}: missing from index.html: {paragraph[:60]}"


@pytest.mark.skipif(not (SHARED / "corpus" / "essays.txt").is_file(), reason="../shared/corpus/essays.txt is not beside this checkout")
def test_every_sentence_of_the_source_essays_is_kept_and_no_debris(built: Settings) -> None:
    source = (SHARED / "corpus" / "essays.txt").read_text(encoding="utf-8")
    published = " ".join(
        text_part_prose((d / "email.txt").read_text(encoding="utf-8")) for d in issue_dirs(built)
    )
    for raw in source.splitlines():
        line = fold(re.sub(r"^\d+\. ", "", raw.strip()))
        if not line or line in DEBRIS:
            continue
        # The source breaks one paragraph over two lines; each half must still be there.
        assert line in published, f"lost from the sample newsletter: {line[:70]}"


def test_no_web_page_debris_in_any_part(built: Settings) -> None:
    for folder in issue_dirs(built):
        for name in ("email.html", "email.txt", "index.html"):
            content = (folder / name).read_text(encoding="utf-8")
            lines = {fold(line) for line in re.split(r"<[^>]+>|\n", content)}
            for debris in DEBRIS:
                assert debris not in lines, f"{folder.name}/{name} still has '{debris}'"


def test_email_html_is_a_responsive_600px_layout_gmail_will_not_clip(built: Settings) -> None:
    for folder in issue_dirs(built):
        html = (folder / "email.html").read_text(encoding="utf-8")
        assert len(html.encode("utf-8")) < 102 * 1024, f"{folder.name} would be clipped by Gmail"
        assert "max-width:600px" in html.replace(" ", "")
        assert "<!--[if mso]>" in html and 'width="600"' in html
        style = re.search(r"<style[^>]*>(.*?)</style>", html.split("<![endif]-->", 1)[1], re.S)
        assert style and "@media" in style.group(1), "phones need the @media rules kept in <style>"
        assert 'class="preheader"' in html and "display:none" in html
        # CSS was inlined: body text carries its own style attribute.
        assert re.search(r'<p style="[^"]*font-size:18px', html)


def test_preheader_carries_the_summary(built: Settings) -> None:
    html = (built.output_path / GOLDEN_SLUG / "email.html").read_text(encoding="utf-8")
    preheader = re.search(r'<div class="preheader"[^>]*>(.*?)</div>', html, re.S)
    assert preheader and preheader.group(1).startswith("Two sayings Tony Benn")


def test_both_parts_carry_a_visible_unsubscribe_placeholder(built: Settings) -> None:
    for folder in issue_dirs(built):
        html = (folder / "email.html").read_text(encoding="utf-8")
        text = (folder / "email.txt").read_text(encoding="utf-8")
        assert re.search(rf'<a href="{re.escape(UNSUBSCRIBE_PLACEHOLDER)}"[^>]*>Unsubscribe</a>', html)
        assert f"Unsubscribe: {UNSUBSCRIBE_PLACEHOLDER}" in text
        assert UNSUBSCRIBE_PLACEHOLDER not in (folder / "index.html").read_text(encoding="utf-8")


def test_text_part_reads_at_72_columns(built: Settings) -> None:
    for folder in issue_dirs(built):
        for line in (folder / "email.txt").read_text(encoding="utf-8").splitlines():
            if "://" in line or UNSUBSCRIBE_PLACEHOLDER in line:
                continue  # a URL is never broken
            assert len(line) <= 72, f"{folder.name}: {line!r}"


def test_links_in_an_essay_become_footnotes_in_the_text_part(settings: Settings) -> None:
    essay = settings.issues_path / "2017-02-13-say-what-you-mean.md"
    essay.write_text(essay.read_text(encoding="utf-8") + "\nRead [the Benn diaries](https://example.org/benn).\n", encoding="utf-8")
    build(settings)
    text = (settings.output_path / GOLDEN_SLUG / "email.txt").read_text(encoding="utf-8")
    assert "Read the Benn diaries [1]." in text
    assert "[1] https://example.org/benn" in text
    html = (settings.output_path / GOLDEN_SLUG / "email.html").read_text(encoding="utf-8")
    assert 'href="https://example.org/benn"' in html


def test_archive_lists_every_issue_newest_first_and_feed_has_one_entry_each(built: Settings) -> None:
    essays, _ = read_essays(built.issues_path)
    newest_first = [e.title for e in sorted(essays, key=lambda e: e.date, reverse=True)]
    archive = visible_text((built.output_path / "index.html").read_text(encoding="utf-8"))
    positions = [archive.index(fold(title)) for title in newest_first]
    assert positions == sorted(positions)

    atom = "{http://www.w3.org/2005/Atom}"
    feed = ET.parse(built.output_path / "feed.xml").getroot()
    entries = feed.findall(f"{atom}entry")
    assert [e.findtext(f"{atom}title") for e in entries] == newest_first
    assert all(e.findtext(f"{atom}id").startswith(built.base_url) for e in entries)


def test_a_long_archive_builds_in_parallel_and_its_feed_carries_the_newest_twenty_whole(settings: Settings) -> None:
    for n in range(30):
        write_essay(settings, f"2030-01-{n + 1:02d}-note-{n}", f"title: Note {n}\ndate: 2030-01-{n + 1:02d}",
                    f"Paragraph of note number {n}.")
    report = build(settings)
    assert report.ok and len(report.built) == 37  # more than PARALLEL_THRESHOLD: the worker processes write them
    for slug in report.built:
        assert (settings.output_path / slug / "email.html").is_file()
    assert "Paragraph of note number 29." in (settings.output_path / "2030-01-30-note-29" / "index.html").read_text()

    atom = "{http://www.w3.org/2005/Atom}"
    entries = ET.parse(settings.output_path / "feed.xml").getroot().findall(f"{atom}entry")
    assert [e.findtext(f"{atom}title") for e in entries] == [f"Note {n}" for n in range(29, 9, -1)]
    assert "Paragraph of note number 29." in entries[0].findtext(f"{atom}content")
    archive = visible_text((settings.output_path / "index.html").read_text(encoding="utf-8"))
    oldest = min(read_essays(settings.issues_path)[0], key=lambda e: e.date)
    assert "Note 0" in archive and fold(oldest.title) in archive  # the archive still lists every issue


GOLDEN_FILES = {  # golden file → the built file it pins
    f"{GOLDEN_SLUG}.email.html": f"{GOLDEN_SLUG}/email.html",
    f"{GOLDEN_SLUG}.email.txt": f"{GOLDEN_SLUG}/email.txt",
    f"{GOLDEN_SLUG}.web.html": f"{GOLDEN_SLUG}/index.html",
    "archive.html": "index.html",
    "feed.xml": "feed.xml",
}


def assert_matches_golden(actual: str, golden: Path) -> None:
    """A change to rendered output shows up as a readable diff.
    Regenerate on purpose with UPDATE_GOLDEN=1 (see the README, Tests)."""
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(actual, encoding="utf-8")
    assert actual.splitlines() == golden.read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("golden", sorted(GOLDEN_FILES))
def test_output_matches_golden_file(built: Settings, golden: str) -> None:
    assert_matches_golden((built.output_path / GOLDEN_FILES[golden]).read_text(encoding="utf-8"), GOLDEN / golden)


# What differs from one copy to the next by design: when and under which id it was made, its MIME boundary.
VOLATILE = [(re.compile(r"^(Date|Message-ID): .*$", re.MULTILINE), r"\1: (masked)"),
            (re.compile(r"={15}\d+=="), "===============(boundary)==")]


def test_a_personal_copy_matches_golden_file(built: Settings) -> None:
    """The .eml a reader gets, headers and both parts, with its volatile headers masked."""
    from newsletter.build import ready_issue
    from newsletter.messages import Recipient, personal_copy

    _, issue = ready_issue(built, GOLDEN_SLUG)
    reader = Recipient(email="ada@example.net", name="Ada Lovelace",
                       unsubscribe_url="https://news.example.org/unsubscribe?token=1:say-what-you-mean.signature")
    message = personal_copy(built, issue, reader).decode("ascii")
    for pattern, mask in VOLATILE:
        message = pattern.sub(mask, message)
    assert_matches_golden(message, GOLDEN / f"{GOLDEN_SLUG}.eml")


def test_rich_markdown_text_part_matches_golden_file(hard_essay: Settings) -> None:
    """Tables, footnotes, strikethrough and bare URLs as a reader of the plain-text part sees them."""
    assert build(hard_essay).ok
    assert_matches_golden((hard_essay.output_path / HARD_SLUG / "email.txt").read_text(encoding="utf-8"), GOLDEN / f"{HARD_SLUG}.email.txt")


def _stamps(settings: Settings) -> dict[str, int]:
    return {
        str(p.relative_to(settings.output_path)): p.stat().st_mtime_ns
        for p in settings.output_path.rglob("*")
        if p.is_file()
    }


def test_rebuild_rewrites_only_the_essay_that_changed(built: Settings) -> None:
    before = _stamps(built)
    essay = built.issues_path / "2017-02-20-we-are-the-union.md"
    essay.write_text(essay.read_text(encoding="utf-8") + "\nA new closing line.\n", encoding="utf-8")
    report = build(built)
    assert report.built == ["2017-02-20-we-are-the-union"]
    after = _stamps(built)
    changed = {name for name in after if after[name] != before.get(name)}
    # The feed carries each issue's text, so it changes with the essay.
    assert changed - {".manifest.json", "feed.xml"} == {
        "2017-02-20-we-are-the-union/email.html",
        "2017-02-20-we-are-the-union/email.txt",
        "2017-02-20-we-are-the-union/index.html",
    }
    assert "A new closing line." in (built.output_path / "2017-02-20-we-are-the-union" / "email.txt").read_text()


def test_nothing_changed_means_nothing_rewritten(built: Settings) -> None:
    before = _stamps(built)
    report = build(built)
    assert report.built == [] and len(report.unchanged) == 7
    after = _stamps(built)
    assert {k: v for k, v in after.items() if k != ".manifest.json"} == {
        k: v for k, v in before.items() if k != ".manifest.json"
    }


def test_hand_edited_or_missing_output_is_rebuilt(built: Settings) -> None:
    edited = built.output_path / GOLDEN_SLUG / "email.html"
    original = edited.read_text(encoding="utf-8")
    edited.write_text("tampered", encoding="utf-8")
    (built.output_path / "2017-02-20-we-are-the-union" / "email.txt").unlink()
    report = build(built)
    assert sorted(report.built) == ["2017-02-13-say-what-you-mean", "2017-02-20-we-are-the-union"]
    assert edited.read_text(encoding="utf-8") == original
    assert (built.output_path / "2017-02-20-we-are-the-union" / "email.txt").is_file()


def test_template_change_rebuilds_every_issue(built: Settings) -> None:
    template = override_template(built, "email.txt.j2")
    template.write_text(template.read_text(encoding="utf-8") + "Thanks for reading.\n", encoding="utf-8")
    report = build(built)
    assert len(report.built) == 7
    assert all((d / "email.txt").read_text().endswith("Thanks for reading.\n") for d in issue_dirs(built))


def test_deleted_essay_loses_its_output_but_the_archive_stays_right(built: Settings) -> None:
    (built.issues_path / "2017-02-20-we-are-the-union.md").unlink()
    report = build(built)
    assert report.removed == ["2017-02-20-we-are-the-union"]
    assert not (built.output_path / "2017-02-20-we-are-the-union").exists()
    assert "We are the union?" not in (built.output_path / "index.html").read_text(encoding="utf-8")


def test_no_temporary_files_are_left_behind(built: Settings) -> None:
    assert not [p for p in built.output_path.rglob("*.tmp")]


def test_many_essays_build_in_parallel_with_the_same_result(settings: Settings) -> None:
    source = (settings.issues_path / "2017-02-13-say-what-you-mean.md").read_text(encoding="utf-8")
    for n in range(30):
        (settings.issues_path / f"2018-01-{n + 1:02d}-copy-{n}.md").write_text(
            source.replace("date: 2017-02-13", f"date: 2018-01-{n + 1:02d}"), encoding="utf-8"
        )
    report = build(settings)
    assert report.ok and len(report.built) == 37
    a = (settings.output_path / "2018-01-05-copy-4" / "email.txt").read_text(encoding="utf-8")
    assert "Never wrestle with a chimney sweep." in a


@pytest.mark.parametrize(("language", "direction"), [("en", "ltr"), ("ar", "rtl"), ("he-IL", "rtl")])
def test_lang_and_dir_sit_on_a_wrapper_inside_body_which_webmail_keeps(settings: Settings, language: str, direction: str) -> None:
    import dataclasses

    from lxml import html as lxml_html

    config = dataclasses.replace(settings, language=language)
    assert build(config).ok
    for part in ("email.html", "index.html"):
        doc = lxml_html.document_fromstring((config.output_path / GOLDEN_SLUG / part).read_text(encoding="utf-8"))
        wrapper = doc.find("body")[0]
        assert (wrapper.get("lang"), wrapper.get("dir")) == (language, direction), part
        assert (doc.get("lang"), doc.get("dir")) == (language, direction), part


def test_the_email_declares_light_and_dark_and_styles_both(built: Settings) -> None:
    html = (built.output_path / GOLDEN_SLUG / "email.html").read_text(encoding="utf-8")
    assert '<meta name="color-scheme" content="light dark">' in html
    assert "color-scheme: light dark" in html
    dark = re.search(r"@media \(prefers-color-scheme: dark\) \{(.*?)</style>", html, re.S)
    assert dark and "background-color: #1e1e1e !important" in dark.group(1)
    assert "[data-ogsc] .content" in html and "[data-ogsb] .container" in html
