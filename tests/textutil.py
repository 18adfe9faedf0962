"""What a reader sees: the visible text of an HTML page, and whitespace folded."""

from __future__ import annotations

import re
from html.parser import HTMLParser


def fold(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


class _Visible(HTMLParser):
    HIDDEN = frozenset({"style", "script", "title", "head"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.HIDDEN:
            self.hidden += 1
        if tag in ("p", "li", "h1", "h2", "h3", "br", "div", "td", "blockquote"):
            self.parts.append(" ")

    def handle_endtag(self, tag):
        if tag in self.HIDDEN:
            self.hidden -= 1
        if tag in ("p", "li", "h1", "h2", "h3", "div", "td", "blockquote"):
            self.parts.append(" ")

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = _Visible()
    parser.feed(html)
    return fold("".join(parser.parts))


def text_part_prose(text: str) -> str:
    """The text part with quote marks and list numbers removed, whitespace folded."""
    lines = [re.sub(r"^(> ?)+", "", line) for line in text.splitlines()]
    return fold(" ".join(lines))


def markdown_paragraphs(body: str) -> list[str]:
    """The prose of each block of an essay's Markdown, without its Markdown marks."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", body):
        for raw in re.split(r"\n(?=\d+\. )", block.strip()):
            item = re.sub(r"^(#+ |> |\d+\. )", "", raw.strip())
            if item:
                paragraphs.append(fold(item))
    return paragraphs
