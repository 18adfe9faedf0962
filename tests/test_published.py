"""serve publishes what the build published and nothing else lying in the output folder."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from newsletter.build import build
from newsletter.config import Settings
from newsletter.web.public import create_app

ISSUE = "2017-02-13-say-what-you-mean"


@pytest.fixture
def client(settings: Settings, store) -> TestClient:
    assert build(settings).ok
    return TestClient(create_app(settings, store, "secret"), follow_redirects=False)


def test_stray_files_in_the_output_folder_are_never_served(client: TestClient, settings: Settings) -> None:
    out = settings.output_path
    (out / "lib" / "newsletter").mkdir(parents=True)
    (out / "lib" / "newsletter" / "config.py").write_text("SECRET = 'x'\n")  # as `pip wheel .` leaves it
    (out / "notes.txt").write_text("editor's notes")
    (out / ISSUE / "draft-ideas.md").write_text("ideas")
    for path in ("/lib/newsletter/config.py", "/notes.txt", f"/{ISSUE}/draft-ideas.md", "/.manifest.json", "/lib/", "/lib"):
        assert client.get(path).status_code == 404, path


def test_what_the_build_wrote_is_served_with_its_type(client: TestClient) -> None:
    assert client.get("/").headers["content-type"].startswith("text/html")
    assert client.get("/feed.xml").headers["content-type"].startswith("application/atom+xml")
    page = client.get(f"/{ISSUE}/")
    assert page.status_code == 200 and "Say what you mean" in page.text
    assert client.get(f"/{ISSUE}/email.txt").status_code == 200
    redirect = client.get(f"/{ISSUE}")
    assert redirect.status_code == 301 and redirect.headers["location"].endswith(f"/{ISSUE}/")


def test_a_removed_issue_stops_being_served_without_a_restart(client: TestClient, settings: Settings) -> None:
    assert client.get(f"/{ISSUE}/").status_code == 200
    (settings.issues_path / f"{ISSUE}.md").unlink()
    build(settings)
    assert client.get(f"/{ISSUE}/").status_code == 404


@pytest.mark.parametrize("path", ["/../newsletter.toml", "/%2e%2e/newsletter.toml", "/..%2fnewsletter.toml", "//etc/passwd"])
def test_paths_outside_the_folder_are_404(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404 and "site_name" not in response.text
