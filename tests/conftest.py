"""Shared fixtures: a fresh copy of the sample project, and settings that point at it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from newsletter.config import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the sample newsletter (essays, templates, settings) in a temporary folder,
    made the working folder, with no NEWSLETTER_* or SendGrid variables leaking in."""
    import os

    for name in list(os.environ):
        if name.startswith("NEWSLETTER_") or name.startswith("SENDGRID_"):
            monkeypatch.delenv(name)
    root = tmp_path / "project"
    root.mkdir()
    shutil.copytree(REPO / "issues", root / "issues")
    shutil.copytree(REPO / "templates", root / "templates")
    shutil.copy(REPO / "newsletter.toml", root / "newsletter.toml")
    if (REPO / "subscribers").is_dir():
        shutil.copytree(REPO / "subscribers", root / "subscribers")
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def settings(project: Path) -> Settings:
    return load_settings(project, environ={})


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium driven by playwright (playwright cannot fetch its own browser here)."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); tests/run.sh installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()
