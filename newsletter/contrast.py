"""WCAG contrast of a built email's text, in light mode (its inlined styles) and in dark
mode (those styles plus its `prefers-color-scheme: dark` rules), without a browser."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

from lxml.html import HtmlElement

AA = 4.5
NAMED = {"white": (255, 255, 255), "black": (0, 0, 0)}
DEFAULTS = {"light": ((0, 0, 0), (255, 255, 255)), "dark": ((255, 255, 255), (18, 18, 18))}  # text, canvas
Colour = tuple[int, int, int]


def parse_colour(value: str) -> Colour | None:
    """#rgb, #rrggbb, rgb()/rgba() (transparent counts as unset) or white/black; else None."""
    value = value.strip().lower().replace("!important", "").strip()
    if value in NAMED:
        return NAMED[value]
    match = re.fullmatch(r"#([0-9a-f]{3}|[0-9a-f]{6})", value)
    if match:
        digits = match.group(1)
        if len(digits) == 3:
            digits = "".join(c * 2 for c in digits)
        return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)
    match = re.fullmatch(r"rgba?\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*(?:,\s*([\d.]+)\s*)?\)", value)
    if match and (match.group(4) is None or float(match.group(4)) >= 0.5):
        return int(match.group(1)), int(match.group(2)), int(match.group(3))
    return None


def ratio(a: Colour, b: Colour) -> float:
    def luminance(colour: Colour) -> float:
        channels = [c / 255 for c in colour]
        r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _inline(element: HtmlElement) -> dict[str, str]:
    declarations: dict[str, str] = {}
    for part in (element.get("style") or "").split(";"):
        name, _, value = part.partition(":")
        if value:
            declarations[name.strip().lower()] = value.strip()
    if element.get("bgcolor") and "background-color" not in declarations:
        declarations["background-color"] = element.get("bgcolor", "")
    if "background-color" not in declarations and "background" in declarations:
        declarations["background-color"] = declarations["background"].split()[0]
    return declarations


def _dark_rules(doc: HtmlElement) -> dict[HtmlElement, dict[str, str]]:
    """What the email's dark-mode rules set on each element, later rules winning."""
    import cssutils

    cssutils.log.setLevel(logging.CRITICAL)
    overrides: dict[HtmlElement, dict[str, str]] = {}
    for style in doc.iter("style"):
        sheet = cssutils.parseString(style.text or "", validate=False)
        for rule in sheet:
            if rule.type != rule.MEDIA_RULE or not re.search(r"prefers-color-scheme\s*:\s*dark", rule.media.mediaText):
                continue
            for inner in rule.cssRules:
                if inner.type != inner.STYLE_RULE:
                    continue
                values = {name: inner.style.getPropertyValue(name) for name in ("color", "background-color", "background")}
                values = {name: value for name, value in values.items() if value}
                if "background" in values:
                    values.setdefault("background-color", values.pop("background").split()[0])
                for selector in inner.selectorList:
                    try:
                        matched = doc.cssselect(selector.selectorText)
                    except Exception:  # noqa: BLE001 - a selector cssselect cannot read applies to nothing we check
                        continue
                    for element in matched:
                        overrides.setdefault(element, {}).update(values)
    return overrides


def _texts(doc: HtmlElement) -> Iterator[tuple[HtmlElement, str]]:
    body = doc.find("body")
    for element in (body.iter() if body is not None else ()):
        if not isinstance(element.tag, str) or element.tag in ("style", "script", "title"):
            continue
        text = " ".join(t.strip() for t in [element.text or "", *(child.tail or "" for child in element)] if t.strip())
        if text:
            yield element, text


class _Scheme:
    """The styles of a document as one colour scheme sees them."""

    def __init__(self, name: str, dark: dict[HtmlElement, dict[str, str]]):
        self.name = name
        self.dark = dark if name == "dark" else {}
        self.styles: dict[HtmlElement, dict[str, str]] = {}
        self.text, self.canvas = DEFAULTS[name]

    def style(self, element: HtmlElement) -> dict[str, str]:
        if element not in self.styles:
            self.styles[element] = {**_inline(element), **self.dark.get(element, {})}
        return self.styles[element]

    def inherited(self, element: HtmlElement, name: str, default: Colour) -> Colour:
        node: HtmlElement | None = element
        while node is not None:
            colour = parse_colour(self.style(node).get(name, ""))
            if colour is not None:
                return colour
            node = node.getparent()
        return default

    def hidden(self, element: HtmlElement) -> bool:
        return any(self.style(node).get("display", "").startswith("none") for node in (element, *element.iterancestors()))


def low_contrast(doc: HtmlElement) -> list[tuple[str, str, float]]:
    """(scheme, 'text' colour on background, ratio) for each pairing of text below AA, once each."""
    dark = _dark_rules(doc)
    found: dict[tuple[str, Colour, Colour], tuple[str, str, float]] = {}
    for scheme in (_Scheme("light", dark), _Scheme("dark", dark)):
        for element, text in _texts(doc):
            if scheme.hidden(element):
                continue
            fg, bg = scheme.inherited(element, "color", scheme.text), scheme.inherited(element, "background-color", scheme.canvas)
            value = ratio(fg, bg)
            if value < AA and (scheme.name, fg, bg) not in found:
                sample = text if len(text) <= 30 else text[:29] + "…"
                found[(scheme.name, fg, bg)] = (scheme.name, f"'{sample}' is {_hex(fg)} on {_hex(bg)}", value)
    return list(found.values())


def _hex(colour: Colour) -> str:
    return "#" + "".join(f"{c:02x}" for c in colour)

