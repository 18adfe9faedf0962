"""Markdown → the plain-text part of an email: wrapped at 72 columns, links as footnotes."""

from __future__ import annotations

import textwrap

from markdown_it import MarkdownIt
from markdown_it.token import Token

WIDTH = 72


class _Writer:
    def __init__(self, width: int):
        self.width = width
        self.blocks: list[str] = []
        self.links: list[str] = []
        self.quote_depth = 0
        self.markers: list[str] = []  # one per open list item, innermost last
        self.fresh_item = False
        self.list_counters: list[int | None] = []  # None for a bullet list

    def prefixes(self) -> tuple[str, str]:
        quote = "> " * self.quote_depth
        outer = "".join(" " * len(m) for m in self.markers[:-1])
        if not self.markers:
            return quote, quote
        marker = self.markers[-1]
        rest = quote + outer + " " * len(marker)
        if self.fresh_item:
            self.fresh_item = False
            return quote + outer + marker, rest
        return rest, rest

    def paragraph(self, text: str) -> None:
        first, rest = self.prefixes()
        lines: list[str] = []
        for piece in text.split("\n"):  # hard breaks survive wrapping
            lines.append(
                textwrap.fill(
                    piece,
                    width=self.width,
                    initial_indent=first if not lines else rest,
                    subsequent_indent=rest,
                    break_long_words=False,
                    break_on_hyphens=False,
                )
            )
        self.blocks.append("\n".join(lines))

    def inline(self, token: Token) -> str:
        out: list[str] = []
        hrefs: list[str | None] = []
        starts: list[int] = []
        for child in token.children or []:
            kind = child.type
            if kind in ("text", "code_inline", "html_inline"):
                out.append(child.content)
            elif kind == "softbreak":
                out.append(" ")
            elif kind == "hardbreak":
                out.append("\n")
            elif kind == "image":
                out.append(child.content or "")
            elif kind == "link_open":
                href = child.attrs.get("href")
                hrefs.append(str(href) if href else None)
                starts.append(len(out))
            elif kind == "link_close":
                href = hrefs.pop() if hrefs else None
                label = "".join(out[starts.pop() if starts else len(out):])
                if href and href not in (label, f"mailto:{label}"):
                    if href not in self.links:
                        self.links.append(href)
                    out.append(f" [{self.links.index(href) + 1}]")
            elif kind in ("em_open", "em_close"):
                out.append("_")
            elif kind in ("strong_open", "strong_close"):
                out.append("*")
        return "".join(out)


def markdown_to_text(md: MarkdownIt, source: str, width: int = WIDTH) -> tuple[str, list[str]]:
    """The body as plain text, and the link targets its [n] footnote marks refer to."""
    writer = _Writer(width)
    tokens = md.parse(source)
    heading_level = 0
    for token in tokens:
        kind = token.type
        if kind == "heading_open":
            heading_level = int(token.tag[1])
        elif kind == "heading_close":
            heading_level = 0
        elif kind == "inline":
            text = writer.inline(token)
            if heading_level:
                first, _ = writer.prefixes()
                underline = "=" if heading_level == 1 else "-"
                writer.blocks.append(f"{first}{text}\n{first}{underline * min(len(text), width - len(first))}")
            else:
                writer.paragraph(text)
        elif kind == "blockquote_open":
            writer.quote_depth += 1
        elif kind == "blockquote_close":
            writer.quote_depth -= 1
        elif kind == "ordered_list_open":
            writer.list_counters.append(int(token.attrs.get("start", 1) or 1))
        elif kind == "bullet_list_open":
            writer.list_counters.append(None)
        elif kind in ("ordered_list_close", "bullet_list_close"):
            writer.list_counters.pop()
        elif kind == "list_item_open":
            counter = writer.list_counters[-1]
            if counter is None:
                writer.markers.append("- ")
            else:
                writer.markers.append(f"{token.info or counter}. ")
                writer.list_counters[-1] = counter + 1
            writer.fresh_item = True
        elif kind == "list_item_close":
            writer.markers.pop()
        elif kind in ("fence", "code_block"):
            writer.blocks.append(textwrap.indent(token.content.rstrip("\n"), "    "))
        elif kind == "hr":
            writer.blocks.append("* * *")
    return "\n\n".join(writer.blocks), writer.links
