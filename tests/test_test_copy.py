"""A test copy is marked as one, and its unsubscribe link explains itself instead of looking broken."""

from __future__ import annotations

import email
import email.policy
from urllib.parse import urlsplit

from click.testing import CliRunner
from starlette.testclient import TestClient

from newsletter.cli import cli
from newsletter.config import Settings
from newsletter.store import Store
from newsletter.tokens import load_secret
from newsletter.web.public import create_app

from .conftest import statuses_in


def send_test_copy(settings: Settings) -> email.message.EmailMessage:
    result = CliRunner().invoke(cli, ["test", "say-what-you-mean", "--to", "editor@example.org"])
    assert result.exit_code == 0, result.output
    [path] = (settings.outbox_path / "test").glob("*.eml")
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def test_test_copy_subject_is_marked(newsletter_with_list: Settings) -> None:
    message = send_test_copy(newsletter_with_list)
    assert message["Subject"] == "[TEST] Say what you mean and never wrestle with chimney sweep"


def test_test_copy_unsubscribe_link_opens_a_page_saying_it_was_a_test(newsletter_with_list: Settings, store: Store) -> None:
    message = send_test_copy(newsletter_with_list)
    link = message["List-Unsubscribe"].strip("<>")
    in_text = message.get_body(("plain",)).get_content()
    assert link in in_text
    before = statuses_in(store)
    parts = urlsplit(link)
    client = TestClient(create_app(newsletter_with_list, store, load_secret(newsletter_with_list)))
    page = client.get(f"{parts.path}?{parts.query}")
    assert page.status_code == 200
    assert "This was a test copy" in page.text and "unsubscribes nobody" in page.text
    assert "does not work" not in page.text and "<form" not in page.text
    one_click = client.post(f"{parts.path}?{parts.query}", content=b"List-Unsubscribe=One-Click")
    assert one_click.status_code == 200 and "This was a test copy" in one_click.text
    assert statuses_in(store) == before


def test_a_forged_test_copy_link_still_does_not_work(newsletter_with_list: Settings, store: Store) -> None:
    client = TestClient(create_app(newsletter_with_list, store, load_secret(newsletter_with_list)))
    page = client.get("/unsubscribe?token=0:say-what-you-mean.forged")
    assert page.status_code == 400 and "does not work" in page.text
