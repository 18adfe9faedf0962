"""Markdown → the plain-text part of an email: wrapped at 72 columns, links as numbered
references, footnotes at the end, tables as aligned columns (or one record per row
when they would not fit in 72 columns)."""

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
            elif kind in ("s_open", "s_close"):
                out.append("~~")
            elif kind == "footnote_ref":
                out.append(f"[^{int(child.meta['id']) + 1}]")
        return "".join(out)

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
    writer = _Writer(width)
    heading_level = 0
    rows: list[list[str]] | None = None  # inside a table
    aligns: list[str] = []
    for token in tokens:
        kind = token.type
        if rows is not None and kind == "inline":
            rows[-1].append(writer.inline(token).strip())
        elif kind == "table_open":
            rows, aligns = [], []
        elif kind == "tr_open" and rows is not None:
            rows.append([])
        elif kind == "th_open":
            aligns.append("right" if "right" in str(token.attrs.get("style", "")) else "left")
        elif kind == "table_close" and rows is not None:
            if rows:
                writer.table(rows, aligns)
            rows = None
        elif kind == "footnote_block_open":
            writer.blocks.append("Notes:")
        elif kind == "footnote_open":
            writer.markers.append(f"[^{int(token.meta['id']) + 1}] ")
            writer.fresh_item = True
        elif kind == "footnote_close":
            writer.markers.pop()
        elif kind == "heading_open":
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
