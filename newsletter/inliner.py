"""CSS inlining for email: the rules of each <style> block move onto the elements
they select; what cannot be inlined (@media rules, pseudo-classes) stays in a
<style> block, made !important so it still wins over the inlined styles.

It does what premailer does with the options this project always used
(premailer.Premailer(keep_style_tags=False, strip_important=False,
allow_network=False, disable_validation=True, disable_basic_attributes=["height"])),
and tests/test_inliner.py holds it to premailer's output byte for byte. It is our
own so that each stylesheet is read once, not once per issue: every issue shares
the template's stylesheet, and reading it is most of premailer's time. Built only
on public APIs: cssutils to read CSS, lxml and cssselect to find the elements.

The rules, as premailer applies them:
- a rule's declarations are inlined on every element its selector matches, in
  order of specificity (!important first, then ids, classes, elements, then
  the order of the stylesheet), a later declaration of a property replacing an
  earlier one in its place; the element's own style attribute wins over all;
- a `<style data-premailer="ignore">` block is left alone (its marker removed),
  and so is one whose `media` is not "all" or "screen";
- selectors with `*` are dropped, pseudo-classes other than :first-child and
  :last-child are kept in the <style> block;
- HTML attributes are set from the inlined CSS for the mail apps that read
  attributes better than CSS: align (text-align), valign (vertical-align),
  bgcolor (background-color, never "transparent"), width; never height, which
  would overwrite an image's own height with "auto"; an image floated left or
  right gets align too.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lxml import etree
from lxml.cssselect import CSSSelector

# Pseudo-classes kept in an inlined selector (cssselect can match them); others stay in the <style> block.
FILTER_PSEUDOSELECTORS = (":last-child", ":first-child", ":nth-child")
IGNORE = "data-premailer"  # <style data-premailer="ignore">: not inlined, kept as it is
_ELEMENT = re.compile(r"(^|\s)\w")
_SHORT_COLOUR = re.compile(r"^#([0-9a-f])([0-9a-f])([0-9a-f])$", re.IGNORECASE)
_BASIC_ATTRIBUTES = {"text-align": "align", "vertical-align": "valign", "background-color": "bgcolor", "width": "width"}
_cssutils_lock = threading.RLock()  # cssutils keeps parser state in globals: one caller at a time


@dataclass(frozen=True)
class _Rule:
    specificity: tuple[int, ...]
    selector: str
    declarations: tuple[tuple[str, str], ...]  # (property, value) as premailer writes them


@dataclass(frozen=True)
class _Stylesheet:
    rules: tuple[_Rule, ...]
    leftover: str  # the <style> text left behind, "" for none


def _cssutils() -> Any:
    import cssutils  # imported here: slow to import, and only a build needs it

    cssutils.log.setLevel(logging.CRITICAL)  # it logs every property it does not know (mso-hide…)
    return cssutils


def _pairs(declarations: str, validate: bool = False) -> tuple[tuple[str, str], ...]:
    """'color:red;margin:0 !important' → (("color", "red"), ("margin", "0 !important")), values as cssutils writes them."""
    with _cssutils_lock:
        style = _cssutils().parseStyle(declarations, validate=validate)
    return tuple(
        (prop.name.strip(), prop.propertyValue.cssText.strip() + (" !important" if prop.priority == "important" else ""))
        for prop in style
    )


def _declarations(properties: list[Any]) -> str:
    return ";".join(f"{p.name}:{p.value}" + (" !important" if p.priority == "important" else "") for p in properties)


@functools.lru_cache(maxsize=64)
def _stylesheet(css: str, index: int) -> _Stylesheet:
    """One <style> block read: the rules to inline (specificity counts `index`, the block's place) and what stays."""
    cssutils = _cssutils()
    with _cssutils_lock:
        sheet = cssutils.parseString(css, validate=False)
        rules: list[_Rule] = []
        leftover: list[str] = []
        for rule in sheet:
            if rule.type == rule.MEDIA_RULE:
                leftover.append(_important_media(rule))
            elif rule.type == rule.STYLE_RULE:
                _style_rule(rule, index, rules, leftover)
    return _Stylesheet(tuple(rules), "\n".join(leftover))


def _style_rule(rule: Any, index: int, rules: list[_Rule], leftover: list[str]) -> None:
    properties = rule.style.getProperties()
    normal = [p for p in properties if p.priority != "important"]
    important = [p for p in properties if p.priority == "important"]
    by_priority = ((1, _declarations(important)), (0, _declarations(normal)))
    for selector in (s.strip() for s in rule.selectorText.split(",")):
        if not selector or selector.startswith("@"):
            continue
        if ":" in selector and ":" + selector.split(":", 1)[1] not in FILTER_PSEUDOSELECTORS:
            leftover.append(f"{selector} {{{_all_important(_declarations(normal + important))}}}")
            continue
        if "*" in selector or selector.startswith(":"):
            continue
        counts = (selector.count("#"), selector.count("."), len(_ELEMENT.findall(selector)))
        for is_important, declarations in by_priority:
            if declarations:
                rules.append(_Rule((is_important, *counts, index, len(rules)), selector, _pairs(declarations)))


def _all_important(declarations: str) -> str:
    return ";".join(p if p.endswith("!important") else f"{p} !important" for p in declarations.split(";"))


def _important_media(media: Any) -> str:
    """An @media rule as CSS text, every declaration in it made !important."""
    for rule in media.cssRules:
        if rule.type not in (rule.COMMENT, rule.UNKNOWN_RULE):
            for key in rule.style.keys():  # noqa: SIM118 - iterating the style itself gives Property objects
                rule.style[key] = (rule.style.getPropertyValue(key, False), "!important")
    return str(media.cssText)


@functools.lru_cache(maxsize=256)
def _selector(selector: str) -> CSSSelector:
    return CSSSelector(selector)


def _select(selector: str, page: etree._Element) -> list[etree._Element]:
    found = _selector(selector)(page)
    return [element for element in found if isinstance(element, etree._Element)] if isinstance(found, list) else []


def inline_css(html: str) -> str:
    """`html` with the rules of its <style> blocks inlined (see the module's docstring)."""
    stripped = html.strip()
    tree = etree.fromstring(stripped, etree.HTMLParser()).getroottree()
    page = tree.getroot()
    doctype: str = tree.docinfo.doctype  # type: ignore[union-attr]  # lxml-stubs lack DocInfo.doctype
    _ensure_head(page)
    rules: list[_Rule] = []
    for index, style in enumerate(_style_blocks(page)):
        sheet = _stylesheet(style.text or "", index)
        rules.extend(sheet.rules)
        if sheet.leftover:
            style.text = sheet.leftover
        else:
            parent = style.getparent()
            assert parent is not None
            parent.remove(style)
    matched: dict[int, tuple[etree._Element, dict[str, str]]] = {}
    for rule in sorted(rules, key=lambda r: r.specificity):
        for element in _select(rule.selector, page):
            matched.setdefault(id(element), (element, {}))[1].update(rule.declarations)
    for element, declared in matched.values():
        _apply(element, declared)
    for image in page.iter("img"):
        _align_floating(image)
    root = tree if stripped.startswith(doctype) else page
    return etree.tostring(root, method="html", encoding="utf-8", pretty_print=False).decode("utf-8")


def _style_blocks(page: etree._Element) -> Iterator[etree._Element]:
    """The <style> elements to inline, in document order (each counts for its rules' specificity)."""
    for style in _select("style", page):
        media = style.get("media")
        if media and media not in ("all", "screen"):
            continue
        if style.get(IGNORE) == "ignore":
            del style.attrib[IGNORE]
            continue
        yield style


def _ensure_head(page: etree._Element) -> None:
    """A <head> for the <style> block left behind, as the first child of <html>."""
    if not _select("head", page) and (body := _select("body", page)):
        parent = body[0].getparent()
        assert parent is not None
        parent.insert(0, etree.Element("head"))


def _apply(element: etree._Element, declared: dict[str, str]) -> None:
    own = element.get("style", "")
    if own:
        declared.update(_pairs(own, validate=True))  # the element's own style wins
    style = "; ".join(f"{k}:{v}" for k, v in declared.items() if v.lower() != "unset")
    if style:
        element.set("style", style)
    for item in style.split(";"):
        key, colon, value = item.partition(":")
        if not colon or ":" in value:
            continue
        attribute = _BASIC_ATTRIBUTES.get(key.strip())
        value = value.strip()
        if attribute == "bgcolor" and "transparent" not in value.lower():
            element.set("bgcolor", _SHORT_COLOUR.sub(r"#\1\1\2\2\3\3", value))
        elif attribute == "width":
            element.set("width", value.removesuffix("px"))
        elif attribute in ("align", "valign"):
            element.set(attribute, value)


def _align_floating(image: etree._Element) -> None:
    """Outlook ignores float but honours align."""
    style = image.get("style", "")
    if "float" not in style:
        return
    with _cssutils_lock:
        floated = _cssutils().parseStyle(style).float
    if floated in ("left", "right"):
        image.set("align", floated)
