"""The hard essay (long URL, long word, code, wide table, footnotes, big image) on a phone and
a desktop, light and dark: nothing scrolls sideways and every text reaches WCAG AA contrast."""

from __future__ import annotations

import pytest

from newsletter.build import build
from newsletter.config import Settings
from newsletter.web.preview import create_app

from .conftest import ARTIFACTS, HARD_SLUG
from .live_server import LiveServer

pytestmark = pytest.mark.browser

# Every element with text of its own: its colour against the first opaque background behind it.
CONTRAST = """(fallback) => {
  const parse = c => { const m = c.match(/[\\d.]+/g).map(Number); return {r: m[0], g: m[1], b: m[2], a: m.length > 3 ? m[3] : 1}; };
  const lum = ({r, g, b}) => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
                               return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const background = el => { for (let e = el; e; e = e.parentElement) {
                               const c = parse(getComputedStyle(e).backgroundColor); if (c.a > 0.5) return c; }
                             return parse(fallback); };
  const worst = [];
  for (const el of document.querySelectorAll('body *')) {
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length || el.closest('.preheader') || ['STYLE', 'SCRIPT', 'TITLE'].includes(el.tagName)) continue;
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden' || style.display === 'none' || parseFloat(style.opacity) === 0) continue;
    const a = lum(parse(style.color)), b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) worst.push([el.tagName, el.className, el.textContent.trim().slice(0, 30), style.color, Math.round(ratio * 100) / 100]);
  }
  return worst;
}"""
FITS = "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"


def is_light_text(page) -> bool:  # a playwright Page or Frame
    """Whether the heading is drawn light (on a dark background)."""
    return page.evaluate("() => getComputedStyle(document.querySelector('h1')).color"
                         ".match(/\\d+/g).slice(0, 3).map(Number).reduce((a, b) => a + b) > 600")


@pytest.fixture
def hard(hard_essay: Settings) -> Settings:
    assert build(hard_essay).ok
    return hard_essay


def _check_page(page, label: str, scheme: str) -> None:
    scroll, client = page.evaluate(FITS)
    assert scroll <= client, f"{label} scrolls sideways: {scroll} > {client}"
    low = page.evaluate(CONTRAST, "rgb(18,18,18)" if scheme == "dark" else "rgb(255,255,255)")
    assert not low, f"{label}: text below 4.5:1 contrast: {low}"


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [375, 800])
@pytest.mark.parametrize("part", ["email.html", "index.html"])
def test_the_hard_essay_fits_and_reads_on_phone_and_desktop(browser, hard: Settings, part: str, width: int, scheme: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
    try:
        for path in (hard.output_path / HARD_SLUG / part, hard.output_path / "index.html"):
            page.goto(path.as_uri())
            _check_page(page, f"{path.relative_to(hard.output_path)} at {width}px, {scheme}", scheme)
        page.goto((hard.output_path / HARD_SLUG / part).as_uri())
        page.screenshot(path=str(ARTIFACTS / f"hard-{part}-{width}-{scheme}.png"), full_page=True)
        # The dark styles are ours, not the app's inversion: the body text is light on dark.
        assert is_light_text(page) == (scheme == "dark")
    finally:
        page.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_unsubscribe_page_reads_in_light_and_dark(browser, settings: Settings, tmp_path, scheme: str) -> None:
    from newsletter.render import template_environment

    page_file = tmp_path / "unsubscribe.html"
    page_file.write_text(template_environment(settings).get_template("unsubscribe.html.j2").render(
        heading="Unsubscribe from Say What You Mean?",
        message="Press the button and reader@example.org will get no more issues.", form_action="?token=x"), encoding="utf-8")
    page = browser.new_page(viewport={"width": 375, "height": 800}, color_scheme=scheme)
    try:
        page.goto(page_file.as_uri())
        _check_page(page, f"the unsubscribe page, {scheme}", scheme)
    finally:
        page.close()


@pytest.mark.parametrize("width", [375, 800])
def test_the_sample_emails_read_in_dark_mode(browser, settings: Settings, width: int) -> None:
    assert build(settings).ok
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme="dark")
    try:
        for folder in sorted(p for p in settings.output_path.iterdir() if p.is_dir() and p.name != "images"):
            page.goto((folder / "email.html").as_uri())
            _check_page(page, f"{folder.name} at {width}px", "dark")
    finally:
        page.close()


@pytest.mark.parametrize("width", [375, 1280])
def test_the_preview_of_the_hard_essay_fits_and_switches_light_and_dark(browser, hard_essay: Settings, width: int) -> None:
    with LiveServer(create_app(hard_essay, watch=False)) as server:
        page = browser.new_page(viewport={"width": width, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            page.goto(f"{server.url}/issues/{HARD_SLUG}/")
            page.frame_locator("iframe.phone").locator("h1").wait_for()
            page.frame_locator("iframe.desktop").locator("h1").wait_for()
            scroll, client = page.evaluate(FITS)
            assert scroll <= client, f"the preview page scrolls sideways at {width}px"
            frames = [f for f in page.frames if f.url.endswith("email.html")]
            assert len(frames) == 2
            for scheme in ("light", "dark"):
                page.get_by_label("Dark" if scheme == "dark" else "Light").check()
                for frame in frames:
                    scroll, client = frame.evaluate(FITS)
                    assert scroll <= client, f"the {frame.name or 'email'} frame scrolls sideways in {scheme}"
                    low = frame.evaluate(CONTRAST, "rgb(18,18,18)" if scheme == "dark" else "rgb(255,255,255)")
                    assert not low, f"{scheme}: {low}"
                    assert is_light_text(frame) == (scheme == "dark"), (scheme, errors)
            page.screenshot(path=str(ARTIFACTS / f"preview-hard-{width}.png"))
            assert not errors, errors  # a script error in the preview breaks its controls
        finally:
            page.close()
