"""A reader subscribes in Chromium: archive → form → confirmation email → a page that
changes nothing → the button → thank-you; then the next send reaches them."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import os
import re
import subprocess
import sys
import time

import pytest

from newsletter.build import build
from newsletter.config import Settings
from newsletter.store import Store
from newsletter.store import subscribers as ops
from newsletter.store.signups import consents
from newsletter.web.public import create_app

from .conftest import ARTIFACTS, sent_one_by_one
from .live_server import LiveServer
from .smtp_server import free_port

pytestmark = pytest.mark.browser
READER = "grace.hopper@example.org"


def newsletter(*args: str, settings: Settings) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "newsletter", *args], cwd=settings.root, env=os.environ.copy(),
                          capture_output=True, text=True, timeout=120, check=False)


def status_of(store: Store, address: str) -> str | None:
    with store.read() as conn:
        found = ops.find(conn, address)
    return found.status if found else None


def test_a_reader_subscribes_from_the_archive_confirms_and_gets_the_next_issue(
        browser, newsletter_with_list: Settings, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    settings = dataclasses.replace(newsletter_with_list, base_url=f"http://127.0.0.1:{port}")
    monkeypatch.setenv("NEWSLETTER_BASE_URL", settings.base_url)
    assert build(settings).ok
    ARTIFACTS.mkdir(exist_ok=True)
    with LiveServer(create_app(settings, store, settings.secret), port=port) as server:
        page = browser.new_page(viewport={"width": 390, "height": 844})
        problems: list[str] = []
        page.on("console", lambda message: problems.append(message.text)
                if message.type == "error" and "status of 404" not in message.text else None)
        page.on("response", lambda response: problems.append(f"{response.status} {response.url}")
                if response.status >= 400 and not response.url.endswith("/favicon.ico") else None)
        try:
            page.goto(server.url + "/")
            form = page.locator("form[data-newsletter-subscribe]")
            form.locator("input[name=email]").fill(READER)
            form.locator("input[name=name]").fill("Grace Hopper")
            # subscribe.js stamps the time the form was shown; a reader takes a few seconds to type.
            page.wait_for_function("document.querySelector('form[data-newsletter-subscribe] input[name=started]').value")
            time.sleep(settings.signup_min_seconds + 0.2)
            form.locator("button[type=submit]").click()
            page.get_by_role("heading", name="Check your inbox").wait_for()
            page.screenshot(path=str(ARTIFACTS / "signup-check-inbox.png"))

            [message] = sent_one_by_one(settings)
            assert message["To"] == f"Grace Hopper <{READER}>"
            link = re.search(r"http://\S+/confirm\?token=\S+", message.get_body(("plain",)).get_content()).group(0)
            assert status_of(store, READER) == "pending"

            page.goto(link)
            button = page.get_by_role("button", name="Yes, subscribe me")
            button.wait_for()
            assert status_of(store, READER) == "pending"  # opening the link changed nothing
            assert len(sent_one_by_one(settings)) == 1
            page.screenshot(path=str(ARTIFACTS / "signup-confirm.png"))
            button.click()
            page.get_by_role("heading", name="Thank you: you are subscribed").wait_for()
            page.screenshot(path=str(ARTIFACTS / "signup-thank-you.png"))
        finally:
            page.close()
    assert problems == []  # no script or policy errors on the way

    assert status_of(store, READER) == "active"
    with store.read() as conn:
        [consent] = consents(conn, ops.find(conn, READER).id)
    assert consent.form == "archive" and consent.requested_ip == "127.0.0.0" and consent.confirmed_at
    assert sent_one_by_one(settings)[-1]["Subject"] == f"Welcome to {settings.site_name}"

    queued = newsletter("queue", "2017-03-06-happy-families-lets-talk-about-new-labour", "--at", "now", "--yes",
                        settings=settings)
    assert queued.returncode == 0, queued.stderr
    sent = newsletter("scheduler", "--once", settings=settings)
    assert sent.returncode == 0, sent.stderr
    received = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                for p in settings.outbox_path.glob("send-*/*.eml")]
    assert [m["To"] for m in received].count(f"Grace Hopper <{READER}>") == 1
