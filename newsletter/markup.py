"""The Markdown writers expect: CommonMark plus tables, strikethrough, footnotes and bare URLs.

Raw HTML in an essay is never passed through: it is shown as the text the
writer typed, so an essay cannot inject markup or scripts into the email,
the web page or the feed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from linkify_it import LinkifyIt
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from mdit_py_plugins.footnote import footnote_plugin


def _table_open(self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    # A wide table scrolls inside its own box rather than widening the page or the email.
    return '<div class="table-scroll">' + self.renderToken(tokens, idx, options, env)


def _table_close(self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    return self.renderToken(tokens, idx, options, env) + "</div>\n"


# After "www.": a host with a dot, then an optional path that does not end in punctuation.
_WWW = re.compile(r"^[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*\.[a-z]{2,}(?:[/?#][^\s<>\"]*[^\s<>\"().,;:!?'])?", re.IGNORECASE)


def _www_url(linkify: LinkifyIt, match: Any) -> None:  # Any: linkify-it-py's Match has no type hints
    match.url = "http://" + match.url


class BareLinks(LinkifyIt):  # type: ignore[misc]  # linkify-it-py has no type hints
    """Bare URLs as writers expect them: with a scheme, starting www., or e-mail addresses.

    Not every word with a dot ('Node.js', 'Amazon.com'), and quickly: text that
    cannot hold a link is never handed to the (slow) full pattern.
    """

    def __init__(self) -> None:
        super().__init__(options={"fuzzy_link": False})
        self.add("www.", {"validate": _WWW, "normalize": _www_url})

    def pretest(self, text: str) -> bool:
        lower = text.lower()
        if "//" not in text and "www." not in lower and "@" not in text and "mailto:" not in lower:
            return False
        return bool(super().pretest(text))


def markdown() -> MarkdownIt:
    """The one Markdown parser of the build, the text part and the check."""
    md = MarkdownIt("commonmark", {"html": False, "linkify": True, "typographer": False})
    md.linkify = BareLinks()
    md.enable(["table", "strikethrough", "linkify"])
    md.use(footnote_plugin)
    md.add_render_rule("table_open", _table_open)
    md.add_render_rule("table_close", _table_close)
    return md
