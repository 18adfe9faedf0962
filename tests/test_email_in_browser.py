"""Every built email, opened in Chromium at phone and desktop widths, reads without zooming."""

from __future__ import annotations

import pytest

from newsletter.build import build
from newsletter.config import Settings

from .conftest import ARTIFACTS

pytestmark = pytest.mark.browser

MEASURE = """() => {
  const texts = [...document.querySelectorAll('td.content p, td.content li, td.content blockquote, td.footer')];
  return {
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    smallest: Math.min(...texts.map(e => parseFloat(getComputedStyle(e).fontSize))),
    count: texts.length,
    containerWidth: document.querySelector('table.container').getBoundingClientRect().width,
  };
}"""


@pytest.mark.parametrize("width", [375, 600])
def test_every_email_fits_the_screen_with_readable_text(browser, settings: Settings, width: int) -> None:
    assert build(settings).ok
    page = browser.new_page(viewport={"width": width, "height": 800})
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        for folder in sorted(p for p in settings.output_path.iterdir() if p.is_dir()):
            page.goto((folder / "email.html").as_uri())
            seen = page.evaluate(MEASURE)
            page.screenshot(path=str(ARTIFACTS / f"{folder.name}-{width}.png"), full_page=True)
            assert seen["count"] > 3
            assert seen["scrollWidth"] <= seen["innerWidth"], f"{folder.name} scrolls sideways at {width}px"
            assert seen["smallest"] >= 14, f"{folder.name} has {seen['smallest']}px text at {width}px"
            assert seen["containerWidth"] <= 600
    finally:
        page.close()
