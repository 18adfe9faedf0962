"""Images: found beside the essay, published under a content-hashed name, linked absolutely, sized."""

from __future__ import annotations

import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path

from PIL import Image

from newsletter.build import build, published_files
from newsletter.config import Settings

from .conftest import HARD_SLUG, write_essay, write_image

SLUG = "2017-03-20-pictures"


class Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[dict[str, str | None]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.found.append(dict(attrs))


def images_in(path: Path) -> list[dict[str, str | None]]:
    parser = Images()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.found


def test_an_image_is_copied_under_its_content_hash_and_linked_absolutely(settings: Settings) -> None:
    image = write_image(settings.issues_path / "pictures" / "Town Hall.png", 400, 300)
    write_essay(settings, SLUG, 'title: "Pictures"\ndate: 2017-03-20', "Look:\n\n![The town hall](pictures/Town%20Hall.png)")
    report = build(settings)
    assert report.ok and not report.warnings
    digest = hashlib.sha256(image.read_bytes()).hexdigest()[:16]
    for part in ("email.html", "index.html"):
        [img] = images_in(settings.output_path / SLUG / part)
        assert img["src"] == f"{settings.base_url}/images/town-hall-{digest}.png"
        assert (img["width"], img["height"], img["alt"]) == ("400", "300", "The town hall")
    published = settings.output_path / "images" / f"town-hall-{digest}.png"
    assert published.read_bytes() == image.read_bytes()
    assert f"images/town-hall-{digest}.png" in published_files(settings.output_path)
    assert f"images/town-hall-{digest}.png" in (settings.output_path / "feed.xml").read_text(encoding="utf-8")


def test_a_changed_image_gets_a_new_name_and_the_old_one_goes(settings: Settings) -> None:
    image = write_image(settings.issues_path / "chart.png", 200, 100)
    write_essay(settings, SLUG, 'title: "Pictures"\ndate: 2017-03-20', "![A chart](chart.png)")
    build(settings)
    [first] = images_in(settings.output_path / SLUG / "email.html")
    write_image(image, 200, 120)
    (settings.issues_path / f"{SLUG}.md").write_text((settings.issues_path / f"{SLUG}.md").read_text() + "\nEdited.\n")
    build(settings)
    [second] = images_in(settings.output_path / SLUG / "email.html")
    assert first["src"] != second["src"] and second["height"] == "120"
    assert [p.name for p in (settings.output_path / "images").iterdir()] == [str(second["src"]).rsplit("/", 1)[1]]


def test_a_large_image_is_scaled_to_the_column_and_resized_for_the_email(hard_essay: Settings) -> None:
    assert build(hard_essay).ok
    [img] = images_in(hard_essay.output_path / HARD_SLUG / "email.html")
    width, height = int(str(img["width"])), int(str(img["height"]))
    assert width <= 600 and width == 520 and height == 260  # 2400 x 1200 kept in proportion
    name = str(img["src"]).removeprefix(hard_essay.base_url + "/")
    with Image.open(hard_essay.output_path / name) as published:
        assert published.size == (1200, 600)  # twice the column: sharp on dense screens, not 2400 px of weight


def test_a_missing_image_is_an_error_naming_the_essay_and_line(settings: Settings) -> None:
    path = write_essay(settings, SLUG, 'title: "Pictures"\ndate: 2017-03-20', "One.\n\nTwo,\nthen ![gone](nowhere/gone.png) here.")
    report = build(settings)
    assert [str(e) for e in report.errors] == [
        f"{path}:9: image 'nowhere/gone.png' not found (looked for {settings.issues_path / 'nowhere' / 'gone.png'}); "
        "put the file there or fix the path, which is relative to the essay"
    ]
    assert SLUG not in report.built and len(report.built) == 7  # the others still build


def test_a_file_that_is_no_image_is_an_error(settings: Settings) -> None:
    (settings.issues_path / "notes.png").write_text("not a picture")
    path = write_essay(settings, SLUG, 'title: "Pictures"\ndate: 2017-03-20', "![notes](notes.png)")
    [error] = build(settings).errors
    assert str(error).startswith(f"{path}:6: image 'notes.png' is not a PNG, JPEG, GIF or WebP image")


def test_an_image_without_alt_text_is_a_build_warning(settings: Settings) -> None:
    write_image(settings.issues_path / "chart.png", 200, 100)
    path = write_essay(settings, SLUG, 'title: "Pictures"\ndate: 2017-03-20', "Intro.\n\n![](chart.png)")
    report = build(settings)
    assert report.ok
    assert [str(w) for w in report.warnings] == [
        f"{path}:8: image 'chart.png' has no alt text; write ![what it shows](chart.png) for readers who cannot see it"]
    assert [str(w) for w in build(settings).warnings] == [str(report.warnings[0])]  # unchanged, still said


def test_build_command_prints_the_image_warning_and_error(settings: Settings) -> None:
    from click.testing import CliRunner

    from newsletter.cli import cli

    write_image(settings.issues_path / "chart.png", 200, 100)
    write_essay(settings, SLUG, 'title: "Pictures"\ndate: 2017-03-20', "![](chart.png)")
    write_essay(settings, "2017-03-27-more", 'title: "More"\ndate: 2017-03-27', "Text.\n\n![x](missing.png)")
    result = CliRunner().invoke(cli, ["build"])
    assert result.exit_code == 1
    assert re.search(r"error: .*more\.md:8: image 'missing\.png' not found", result.output)
    assert re.search(r"warning: .*pictures\.md:6: image 'chart\.png' has no alt text", result.output)
