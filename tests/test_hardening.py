"""The public app and the preview hold up against browsers and strangers: security headers
on every answer, bounded bodies, no reflected markup, no foreign Host, and reads that
never wait for a writer."""

from __future__ import annotations

import dataclasses
import threading
import time

import httpx2 as httpx
import pytest
from starlette.testclient import TestClient

from newsletter.config import Settings
from newsletter.store import Store
from newsletter.store import subscribers as ops
from newsletter.web.public import create_app

from .conftest import form_started
from .live_server import LiveServer

HEADERS = ("content-security-policy", "x-content-type-options", "referrer-policy")


@pytest.fixture
def client(newsletter_with_list: Settings, store: Store) -> TestClient:
    return TestClient(create_app(newsletter_with_list, store, newsletter_with_list.secret), raise_server_exceptions=False)


def assert_hardened(response: httpx.Response) -> None:
    policy = response.headers.get("content-security-policy", "")
    assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy, response.headers
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/", 200),
    ("GET", "/feed.xml", 200),
    ("GET", "/2017-02-20-we-are-the-union/", 200),
    ("GET", "/subscribe", 200),
    ("GET", "/subscribe.js", 200),
    ("POST", "/subscribe", 200),
    ("GET", "/confirm?token=forged", 400),
    ("POST", "/confirm?token=forged", 400),
    ("GET", "/unsubscribe?token=forged", 400),
    ("POST", "/webhooks/sendgrid", 403),
    ("GET", "/no-such-page", 404),
    ("DELETE", "/subscribe", 405),
])
def test_every_route_answers_with_the_security_headers(client: TestClient, method: str, path: str, status: int) -> None:
    response = client.request(method, path)
    assert response.status_code == status
    assert_hardened(response)


def test_a_server_error_is_a_styled_page_with_the_headers(client: TestClient, monkeypatch: pytest.MonkeyPatch,
                                                          newsletter_with_list: Settings) -> None:
    from newsletter.signup import Signups

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the database went away with ada@example.com")

    monkeypatch.setattr(Signups, "check", broken)
    response = client.get("/confirm?token=x")
    assert response.status_code == 500
    assert_hardened(response)
    assert "Something went wrong" in response.text and newsletter_with_list.site_name in response.text
    assert "ada@example.com" not in response.text and "Traceback" not in response.text


def test_a_missing_page_is_styled_and_echoes_nothing(client: TestClient, newsletter_with_list: Settings) -> None:
    response = client.get("/<svg onload=alert(1)>/")
    assert response.status_code == 404
    assert "Page not found" in response.text and newsletter_with_list.site_name in response.text
    assert "<svg" not in response.text and "svg" not in response.text
    assert response.headers["content-type"].startswith("text/html")


def test_an_oversized_body_is_refused_before_it_is_read(newsletter_with_list: Settings, store: Store) -> None:
    settings = dataclasses.replace(newsletter_with_list, max_request_bytes=4096)
    client = TestClient(create_app(settings, store, settings.secret))
    big = {"email": "grace@example.org", "started": form_started(settings, 10), "name": "x" * 10_000}
    declared = client.post("/subscribe", data=big)
    assert declared.status_code == 413 and "Too much" in declared.text
    assert_hardened(declared)

    def chunks():  # no Content-Length: the body streams in
        for _ in range(10):
            yield b"email=grace%40example.org&name=" + b"x" * 1000

    streamed = client.post("/subscribe", content=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert streamed.status_code == 413
    assert_hardened(streamed)
    with store.read() as conn:
        assert ops.find(conn, "grace@example.org") is None
    small = client.post("/subscribe", data={**big, "name": "Grace"})
    assert small.status_code == 200


def test_sqlite_reads_never_wait_for_a_writer_and_writers_still_take_turns(newsletter_with_list: Settings,
                                                                          store: Store) -> None:
    if store.dialect != "sqlite":
        pytest.skip("the write lock is SQLite's")
    with store.begin() as conn:  # a long import holds the write lock
        ops.add(conn, "grace@example.org")
        read: list[str] = []

        def reader() -> None:
            with store.read() as other:
                read.extend(s.email for s in ops.iter_subscribers(other))

        thread = threading.Thread(target=reader)
        thread.start()
        thread.join(timeout=3)
        waited = thread.is_alive()

        second_writer: list[float] = []

        def writer() -> None:
            with store.begin() as other:
                second_writer.append(time.monotonic())
                ops.add(other, "hedy@example.org")

        started = threading.Thread(target=writer)
        started.start()
        time.sleep(0.5)
        writer_got_in = bool(second_writer)
        held_until = time.monotonic()
    thread.join()
    started.join(timeout=30)
    assert not waited, "a read waited for the writer's lock"
    assert "grace@example.org" not in read  # and it saw only committed rows
    assert not writer_got_in and second_writer and second_writer[0] >= held_until, "two writers held the lock at once"


def test_the_public_app_keeps_answering_while_a_post_waits_for_the_database(newsletter_with_list: Settings,
                                                                             store: Store) -> None:
    """Database work runs in threads: a post stuck behind a writer does not stall other pages."""
    if store.dialect != "sqlite":
        pytest.skip("the write lock is SQLite's")
    settings = newsletter_with_list
    with LiveServer(create_app(settings, store, settings.secret)) as server:
        answered: list[int] = []
        with store.begin() as conn:
            ops.add(conn, "someone@example.org")

            def post() -> None:
                answered.append(httpx.post(f"{server.url}/subscribe", timeout=60, data={
                    "email": "grace@example.org", "started": form_started(settings, 10)}).status_code)

            poster = threading.Thread(target=post)
            poster.start()
            time.sleep(0.5)  # the post is now waiting for the write lock
            # A stalled app would never answer while we hold the lock: the get times out instead.
            page = httpx.get(f"{server.url}/feed.xml", timeout=10)
            assert not answered  # the feed came while the post still waited
        poster.join(timeout=30)
    assert page.status_code == 200
    assert answered == [200]


def test_preview_escapes_what_its_404_echoes(settings: Settings) -> None:
    from newsletter.web.preview import create_app as preview_app

    client = TestClient(preview_app(settings, watch=False), base_url="http://127.0.0.1:8001")
    response = client.get("/issues/<svg onload=alert(1)>/")
    assert response.status_code == 404
    assert "<svg" not in response.text and "&lt;svg onload=alert(1)&gt;" in response.text


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8001", "127.0.0.1.evil.example", "192.168.1.9:8001"])
def test_preview_refuses_a_foreign_host(settings: Settings, host: str) -> None:
    from newsletter.web.preview import create_app as preview_app

    with LiveServer(preview_app(settings, watch=False)) as server:
        refused = httpx.get(f"{server.url}/", headers={"Host": host})
        assert refused.status_code == 400 and "Say What You Mean" not in refused.text
        assert httpx.get(f"{server.url}/").status_code == 200
        assert httpx.get(f"http://localhost:{server.port}/").status_code == 200
