"""The postal address anti-spam laws ask for is in every footer: both parts of every email, every web page."""

from __future__ import annotations

import dataclasses
import email
import email.policy
from pathlib import Path

from click.testing import CliRunner

from newsletter.build import build
from newsletter.cli import cli
from newsletter.config import Settings

from .textutil import visible_text

ADDRESS = "Ünïcode & Co, 12 Rue <Haute>\n75001 Paris"


def test_postal_address_is_in_both_parts_of_every_sent_email(newsletter_with_list: Settings, monkeypatch) -> None:
    monkeypatch.setenv("NEWSLETTER_POSTAL_ADDRESS", ADDRESS)
    assert CliRunner().invoke(cli, ["queue", "say-what-you-mean", "--at", "now", "--yes"]).exit_code == 0
    assert CliRunner().invoke(cli, ["scheduler", "--once"]).exit_code == 0
    paths = sorted(newsletter_with_list.outbox_path.glob("send-*/*.eml"))
    assert paths
    for path in paths:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
        html = message.get_body(("html",)).get_content()
        assert text.rstrip().endswith(ADDRESS)
        assert "Ünïcode &amp; Co, 12 Rue &lt;Haute&gt;, 75001 Paris" in html  # escaped, on one line


def test_postal_address_is_in_every_web_page_footer(settings: Settings) -> None:
    settings = dataclasses.replace(settings, postal_address=ADDRESS)
    assert build(settings).ok
    pages = [settings.output_path / "index.html", *settings.output_path.glob("*/index.html")]
    assert len(pages) == 8
    for page in pages:
        footer = page.read_text(encoding="utf-8").rpartition("<footer>")[2]
        assert "Ünïcode &amp; Co, 12 Rue &lt;Haute&gt;, 75001 Paris" in footer, page


def test_changing_the_postal_address_rebuilds_every_issue(settings: Settings) -> None:
    assert build(settings).ok
    report = build(dataclasses.replace(settings, postal_address="Somewhere else"))
    assert len(report.built) == 7 and not report.unchanged
    assert "Somewhere else" in visible_text((settings.output_path / report.built[0] / "email.html").read_text(encoding="utf-8"))


def test_no_postal_address_leaves_no_empty_line(settings: Settings) -> None:
    settings = dataclasses.replace(settings, postal_address="")
    assert build(settings).ok
    text = next(Path(settings.output_path).glob("*/email.txt")).read_text(encoding="utf-8")
    assert text.rstrip().splitlines()[-1].startswith("Unsubscribe: ")
