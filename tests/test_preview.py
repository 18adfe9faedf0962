"""The editor's preview: every issue, two widths and the text part, live as essays change."""

from __future__ import annotations

import time

import pytest
from starlette.testclient import TestClient

from newsletter.config import Settings
from newsletter.essays import read_essays
from newsletter.web.preview import create_app

from .conftest import ARTIFACTS
from .live_server import LiveServer

ISSUE = "2017-02-13-say-what-you-mean"


@pytest.fixture
def client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings, watch=False), base_url="http://127.0.0.1:8001")


def test_index_lists_every_issue_by_title_with_links(client: TestClient, settings: Settings) -> None:
    page = client.get("/").text
    essays, _ = read_essays(settings.issues_path)
    assert len(essays) == 7
    for essay in essays:
        assert f'href="/issues/{essay.slug}/"' in page
        assert essay.title in page


def test_issue_page_shows_desktop_and_phone_frames_text_and_web(client: TestClient) -> None:
    page = client.get(f"/issues/{ISSUE}/").text
    assert 'class="desktop"' in page and 'class="phone"' in page
    assert f'src="/build/{ISSUE}/email.html"' in page and f'src="/build/{ISSUE}/index.html"' in page
    assert "Never wrestle with a chimney sweep." in page  # the text part, in its tab
    assert client.get(f"/build/{ISSUE}/email.html").status_code == 200


@pytest.mark.parametrize("path", [
    "/build/..%2f..%2fnewsletter.toml", "/build/../newsletter.toml", "/build/%2e%2e/%2e%2e/etc/passwd",
    "/build//etc/passwd", "/build/..%2F..%2Fissues%2F2017-02-13-say-what-you-mean.md",
])
def test_only_what_the_build_wrote_is_served(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert "site_name" not in response.text and "root:" not in response.text and "title:" not in response.text


def test_a_broken_essay_shows_its_error_and_the_preview_keeps_running(settings: Settings) -> None:
    essay = settings.issues_path / f"{ISSUE}.md"
    essay.write_text(essay.read_text(encoding="utf-8").replace("title:", "titel:"), encoding="utf-8")
    client = TestClient(create_app(settings, watch=False), base_url="http://127.0.0.1:8001")
    index = client.get("/").text
    assert f"{ISSUE}.md:2: unknown front matter key" in index
    page = client.get(f"/issues/{ISSUE}/")
    assert page.status_code == 200 and "does not build" in page.text
    assert client.get("/issues/2017-02-20-we-are-the-union/").status_code == 200


@pytest.mark.browser
def test_preview_in_chromium_lists_issues_fits_phones_and_reloads_on_save(browser, settings: Settings) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    with LiveServer(create_app(settings)) as server:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        try:
            page.goto(server.url + "/")
            assert page.locator(".issues li").count() == 7

            page.goto(f"{server.url}/issues/{ISSUE}/")
            page.frame_locator("iframe.phone").locator("h1").wait_for()
            frames = [f for f in page.frames if f.url.endswith("email.html")]
            sizes = [f.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]") for f in frames]
            assert sorted(s[1] for s in sizes) == [375, 700]
            assert all(scroll <= inner for scroll, inner in sizes), sizes
            # The desktop frame is wider than the phone breakpoint: it shows the desktop layout.
            desktop = page.frame_locator("iframe.desktop").locator("td.content")
            assert desktop.evaluate("e => getComputedStyle(e).paddingLeft") == "40px"
            page.screenshot(path=str(ARTIFACTS / "preview-issue.png"))

            # Save a change to the essay: the open page shows it without anyone pressing reload.
            essay = settings.issues_path / f"{ISSUE}.md"
            essay.write_text(essay.read_text(encoding="utf-8").replace(
                "I love this saying", "I have always loved this saying"), encoding="utf-8")
            started = time.monotonic()
            page.frame_locator("iframe.desktop").get_by_text("I have always loved this saying").wait_for(timeout=10_000)
            page.get_by_role("tab", name="Text part").click()
            assert "I have always loved this saying" in page.locator("pre.text").inner_text()
            print(f"live reload took {time.monotonic() - started:.2f} s")
        finally:
            page.close()
