"""CSS inlining for email, through premailer's public API.

The rules of each <style> block move onto the elements they select; what cannot
be inlined (@media rules, pseudo-classes) stays in a <style> block. premailer
keeps its parse of each stylesheet (`cache_css_parsing`, its own cache), and
every issue shares the template's stylesheet, so it is read once per process.
"""

from __future__ import annotations

import logging


def inline_css(html: str) -> str:
    """The email's HTML with its CSS inlined, as mail apps need it."""
    from premailer import Premailer  # imported here: it is slow to import and only builds need it

    return str(Premailer(
        html,
        keep_style_tags=False,
        strip_important=False,
        allow_network=False,
        disable_validation=True,
        disable_basic_attributes=["height"],  # 'height: auto' must not overwrite an image's height attribute
        cssutils_logging_level=logging.CRITICAL,
        cache_css_parsing=True,
    ).transform(pretty_print=False))
