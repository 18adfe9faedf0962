"""The To header, with the subscriber's name exactly as stored.

Python's email package decodes anything shaped like an RFC 2047 encoded-word
(=?utf-8?b?…?=) when a header is set, even inside quotes, so a name such as
"=?utf-8?b?SGFja2Vk?=" would reach the reader as "Hacked". Such a name is
encoded here as an encoded-word of its own literal text instead, which every
mail program decodes back to exactly what the subscriber typed.
"""

from __future__ import annotations

import base64

from email.policy import Policy
from email.utils import formataddr


class _EncodedToHeader:
    """A header object as email.policy.EmailPolicy documents them: a `name`, and a `fold`."""

    def __init__(self, display_name: str, address: str):
        self.name = "To"
        # One word, unfolded: readers disagree on the space between two encoded-words.
        # At most 200 characters of name keep it well inside the 998 of a header line.
        encoded = base64.b64encode(display_name.encode("utf-8")).decode("ascii")
        self._text = f"=?utf-8?b?{encoded}?= <{address}>"

    def fold(self, *, policy: Policy) -> str:
        return f"{self.name}: {self._text}{policy.linesep}"

    def __str__(self) -> str:
        return self._text


def to_header(name: str, address: str) -> str | _EncodedToHeader:
    """What to assign to message["To"] for this recipient."""
    if not name:
        return address
    if "=?" in name:
        return _EncodedToHeader(name, address)
    return formataddr((name, address))
