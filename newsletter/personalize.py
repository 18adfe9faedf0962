"""The per-recipient part of an issue: a placeholder at build time, a substitution at send time."""

from __future__ import annotations

from html import escape

# Chosen to survive Markdown, Jinja2 and CSS inlining untouched, and to double as
# SendGrid's substitution tag, so a SendGrid request carries the issue once.
UNSUBSCRIBE_PLACEHOLDER = "%%unsubscribe_url%%"


def personal_html(html: str, unsubscribe_url: str) -> str:
    return html.replace(UNSUBSCRIBE_PLACEHOLDER, escape(unsubscribe_url, quote=True))


def personal_text(text: str, unsubscribe_url: str) -> str:
    return text.replace(UNSUBSCRIBE_PLACEHOLDER, unsubscribe_url)
