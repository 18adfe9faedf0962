"""Markdown → the plain-text part of an email: wrapped at 72 columns, links as numbered
references, footnotes at the end, tables as aligned columns (or one record per row
when they would not fit in 72 columns)."""

from __future__ import annotations

import textwrap
from collections.abc import Callable

from markdown_it import MarkdownIt
from markdown_it.token import Token

WIDTH = 72
# Inline tokens written as the writer typed them, and the marks that stand for emphasis.
_AS_TYPED = frozenset({"text", "code_inline", "html_inline", "image"})
_MARKS = {
    "softbreak": " ", "hardbreak": "\n",
    "em_open": "_", "em_close": "_", "strong_open": "*", "strong_close": "*", "s_open": "~~", "s_close": "~~",
}


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
            if kind in _AS_TYPED:
                out.append(child.content or "")
            elif kind in _MARKS:
                out.append(_MARKS[kind])
            elif kind == "link_open":
                href = child.attrs.get("href")
                hrefs.append(str(href) if href else None)
                starts.append(len(out))
            elif kind == "link_close":
                label = "".join(out[starts.pop() if starts else len(out):])
                out.append(self.reference(hrefs.pop() if hrefs else None, label))
            elif kind == "footnote_ref":
                out.append(f"[^{int(child.meta['id']) + 1}]")
        return "".join(out)

    def reference(self, href: str | None, label: str) -> str:
        """" [n]" after a link's text, n numbering its target among the links; "" when the text is the target."""
        if not href or href in (label, f"mailto:{label}"):
            return ""
        if href not in self.links:
            self.links.append(href)
        return f" [{self.links.index(href) + 1}]"

    def table(self, rows: list[list[str]], aligns: list[str]) -> None:
        """Columns when they fit the width, else each row as 'Header: value' lines."""
        first, rest = self.prefixes()
        room = self.width - len(rest)
        columns = max(len(row) for row in rows)
        rows = [row + [""] * (columns - len(row)) for row in rows]
        widths = [max(len(row[n]) for row in rows) for n in range(columns)]
        if sum(widths) + 2 * (columns - 1) <= room:
            def line(row: list[str]) -> str:
                cells = [cell.rjust(w) if n < len(aligns) and aligns[n] == "right" else cell.ljust(w)
                         for n, (cell, w) in enumerate(zip(row, widths, strict=True))]
                return "  ".join(cells).rstrip()
            lines = [line(rows[0]), "  ".join("-" * w for w in widths), *(line(row) for row in rows[1:])]
            self.blocks.append("\n".join((first if n == 0 else rest) + text for n, text in enumerate(lines)))
            return
        header, records = rows[0], rows[1:] or [rows[0]]
        for record in records:
            fields = []
            for name, value in zip(header, record, strict=True):
                label = f"{name}: " if name and record is not header else ""
                fields.append(textwrap.fill(label + value, width=self.width, initial_indent=rest, subsequent_indent=rest + "  ",
                                            break_long_words=False, break_on_hyphens=False) or rest.rstrip())
            self.blocks.append("\n".join(fields))


def markdown_to_text(md: MarkdownIt, source: str, width: int = WIDTH) -> tuple[str, list[str]]:
    """The body as plain text, and the link targets its [n] marks refer to."""
    return tokens_to_text(md.parse(source), width)


def tokens_to_text(tokens: list[Token], width: int = WIDTH) -> tuple[str, list[str]]:
    """The parsed body as plain text, and the link targets its [n] marks refer to."""
    writer = _Blocks(width)
    for token in tokens:
        writer.add(token)
    return "\n\n".join(writer.blocks), writer.links


class _Blocks(_Writer):
    """Writes block tokens one by one: each token type has its method in _BLOCK."""

    def __init__(self, width: int):
        super().__init__(width)
        self.heading_level = 0
        self.rows: list[list[str]] | None = None  # inside a table
        self.aligns: list[str] = []

    def add(self, token: Token) -> None:
        if self.rows is not None and token.type == "inline":
            self.rows[-1].append(self.inline(token).strip())
            return
        handler = _BLOCK.get(token.type)
        if handler is not None:
            handler(self, token)

    def table_open(self, token: Token) -> None:
        self.rows, self.aligns = [], []

    def tr_open(self, token: Token) -> None:
        if self.rows is not None:
            self.rows.append([])

    def th_open(self, token: Token) -> None:
        self.aligns.append("right" if "right" in str(token.attrs.get("style", "")) else "left")

    def table_close(self, token: Token) -> None:
        if self.rows:
            self.table(self.rows, self.aligns)
        self.rows = None

    def footnote_block_open(self, token: Token) -> None:
        self.blocks.append("Notes:")

    def footnote_open(self, token: Token) -> None:
        self.markers.append(f"[^{int(token.meta['id']) + 1}] ")
        self.fresh_item = True

    def item_close(self, token: Token) -> None:
        self.markers.pop()

    def heading_open(self, token: Token) -> None:
        self.heading_level = int(token.tag[1])

    def heading_close(self, token: Token) -> None:
        self.heading_level = 0

    def text(self, token: Token) -> None:
        text = self.inline(token)
        if not self.heading_level:
            self.paragraph(text)
            return
        first, _ = self.prefixes()
        underline = "=" if self.heading_level == 1 else "-"
        self.blocks.append(f"{first}{text}\n{first}{underline * min(len(text), self.width - len(first))}")

    def blockquote_open(self, token: Token) -> None:
        self.quote_depth += 1

    def blockquote_close(self, token: Token) -> None:
        self.quote_depth -= 1

    def ordered_list_open(self, token: Token) -> None:
        self.list_counters.append(int(token.attrs.get("start", 1) or 1))

    def bullet_list_open(self, token: Token) -> None:
        self.list_counters.append(None)

    def list_close(self, token: Token) -> None:
        self.list_counters.pop()

    def list_item_open(self, token: Token) -> None:
        counter = self.list_counters[-1]
        if counter is None:
            self.markers.append("- ")
        else:
            self.markers.append(f"{token.info or counter}. ")
            self.list_counters[-1] = counter + 1
        self.fresh_item = True

    def code(self, token: Token) -> None:
        self.blocks.append(textwrap.indent(token.content.rstrip("\n"), "    "))

    def hr(self, token: Token) -> None:
        self.blocks.append("* * *")


_BLOCK: dict[str, Callable[[_Blocks, Token], None]] = {
    "table_open": _Blocks.table_open,
    "tr_open": _Blocks.tr_open,
    "th_open": _Blocks.th_open,
    "table_close": _Blocks.table_close,
    "footnote_block_open": _Blocks.footnote_block_open,
    "footnote_open": _Blocks.footnote_open,
    "footnote_close": _Blocks.item_close,
    "heading_open": _Blocks.heading_open,
    "heading_close": _Blocks.heading_close,
    "inline": _Blocks.text,
    "blockquote_open": _Blocks.blockquote_open,
    "blockquote_close": _Blocks.blockquote_close,
    "ordered_list_open": _Blocks.ordered_list_open,
    "bullet_list_open": _Blocks.bullet_list_open,
    "ordered_list_close": _Blocks.list_close,
    "bullet_list_close": _Blocks.list_close,
    "list_item_open": _Blocks.list_item_open,
    "list_item_close": _Blocks.item_close,
    "fence": _Blocks.code,
    "code_block": _Blocks.code,
    "hr": _Blocks.hr,
}
