"""A draft is the writer's alone: previewed, never published, never queued."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from newsletter.build import build, preview_output
from newsletter.cli import cli
from newsletter.config import Settings
from newsletter.web import preview
from newsletter.web.public import create_app

from .conftest import write_essay

DRAFT = "2027-01-04-next-year"


@pytest.fixture
def with_draft(settings: Settings) -> Settings:
    write_essay(settings, DRAFT, 'title: "Not yet, please"\ndate: 2027-01-04\ndraft: true', "Still thinking about this one.")
    return settings


def test_a_draft_is_absent_from_the_build_the_archive_and_the_feed(with_draft: Settings) -> None:
    report = build(with_draft)
    assert report.ok and [d.slug for d in report.drafts] == [DRAFT]
    assert DRAFT not in report.built and not (with_draft.output_path / DRAFT).exists()
    assert "Not yet, please" not in (with_draft.output_path / "index.html").read_text(encoding="utf-8")
    feed = ET.parse(with_draft.output_path / "feed.xml").getroot()
    assert "Not yet, please" not in ET.tostring(feed, encoding="unicode")
    assert len(feed.findall("{http://www.w3.org/2005/Atom}entry")) == 7


def test_a_published_issue_made_a_draft_is_taken_down(settings: Settings) -> None:
    path = write_essay(settings, DRAFT, 'title: "Not yet, please"\ndate: 2027-01-04', "Published by mistake.")
    build(settings)
    assert (settings.output_path / DRAFT / "index.html").is_file()
    path.write_text(path.read_text(encoding="utf-8").replace("date: 2027-01-04", "date: 2027-01-04\ndraft: true"), encoding="utf-8")
    report = build(settings)
    assert DRAFT in report.removed and not (settings.output_path / DRAFT).exists()
    assert "Not yet, please" not in (settings.output_path / "index.html").read_text(encoding="utf-8")


def test_a_draft_is_404_on_serve(with_draft: Settings, store) -> None:
    build(with_draft)
    build(with_draft, drafts=True)  # the preview's build must not leak into what serve publishes
    client = TestClient(create_app(with_draft, store, "secret"))
    assert client.get(f"/{DRAFT}/").status_code == 404
    assert client.get(f"/{DRAFT}/email.html").status_code == 404
    assert client.get("/2017-02-13-say-what-you-mean/").status_code == 200


def test_a_draft_shows_in_the_preview_marked_as_a_draft(with_draft: Settings) -> None:
    client = TestClient(preview.create_app(with_draft, watch=False), base_url="http://127.0.0.1:8001")
    index = client.get("/").text
    assert f'href="/issues/{DRAFT}/"' in index and "Draft</span>" in index
    page = client.get(f"/issues/{DRAFT}/").text
    assert "Draft</span>" in page and "never published" in page
    assert "Still thinking about this one." in client.get(f"/build/{DRAFT}/email.html").text
    assert (preview_output(with_draft) / DRAFT / "email.html").is_file()
    assert not (with_draft.output_path / DRAFT).exists()


def test_queue_refuses_a_draft_and_says_how_to_publish_it(with_draft: Settings) -> None:
    result = CliRunner().invoke(cli, ["queue", "next-year", "--at", "now", "--yes"])
    assert result.exit_code == 1
    assert "is a draft" in result.output and "draft: true" in result.output and "queue it again" in result.output
    assert "Traceback" not in result.output


def test_draft_must_be_true_or_false(settings: Settings) -> None:
    write_essay(settings, DRAFT, 'title: "x"\ndate: 2027-01-04\ndraft: maybe', "Body.")
    report = build(settings)
    assert [str(e) for e in report.errors] == [f"{settings.issues_path / DRAFT}.md:4: draft must be true or false, not 'maybe'"]


def test_the_preview_shows_an_image_warning_beside_the_issue(settings: Settings) -> None:
    from .conftest import write_image

    write_image(settings.issues_path / "chart.png", 200, 100)
    write_essay(settings, DRAFT, 'title: "Not yet, please"\ndate: 2027-01-04\ndraft: true', "![](chart.png)")
    page = TestClient(preview.create_app(settings, watch=False), base_url="http://127.0.0.1:8001").get(f"/issues/{DRAFT}/").text
    assert "Worth fixing before you send it" in page and "image &#39;chart.png&#39; has no alt text" in page


def test_a_test_copy_of_a_draft_goes_to_the_editor(with_draft: Settings) -> None:
    result = CliRunner().invoke(cli, ["test", "next-year", "--to", "editor@example.org"])
    assert result.exit_code == 0, result.output
    [eml] = list((with_draft.outbox_path / "test").rglob("*.eml"))
    assert "Still thinking about this one." in eml.read_text(encoding="utf-8", errors="replace")
    assert not (with_draft.output_path / DRAFT).exists()
