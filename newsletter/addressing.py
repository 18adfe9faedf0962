"""A subscriber's address and name as they go on the wire: the envelope and the To header.

Names are display text, never header structure. Line breaks and control
characters become spaces. A name that is not plain ASCII, or that merely looks
like an RFC 2047 encoded-word (=?utf-8?b?…?=), goes out as one encoded-word of
its own literal text, which every mail program decodes back to exactly what
the subscriber typed: Python's email package would otherwise decode such a
look-alike when the header is set, and a comma or angle bracket in it could
become a second address.

Addresses: an internationalised domain goes out in its ASCII (xn--) form; a
non-ASCII part before the @ goes out as is and needs SMTPUTF8 (`needs_smtputf8`).
"""

from __future__ import annotations

import base64
import re
from email.policy import Policy

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPECIALS = re.compile(r'[][\\()<>@,:;".]')


class UnsendableAddress(ValueError):
    """The address cannot be written on an envelope; str() says why."""


def display_name(name: str) -> str:
    """The name with every line break and control character made one space."""
    return " ".join(_UNSAFE.sub(" ", name).split())


def wire_address(address: str) -> str:
    """The address with its domain in ASCII (punycode) form, or UnsendableAddress."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or _UNSAFE.search(address) or any(c in address for c in " <>,;\"\\"):
        raise UnsendableAddress("not a single plain address")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise UnsendableAddress("the domain has no ASCII (punycode) form") from None
    return f"{local}@{domain}"


def needs_smtputf8(address: str) -> bool:
    """True when the part before the @ is not ASCII: only SMTPUTF8 can carry it."""
    return not address.rpartition("@")[0].isascii()


class _PreparedTo:
    """A header object as email.policy.EmailPolicy documents them: a `name`, and a `fold`.
    Its text is final, so the email package does not parse (or decode) it again."""

    def __init__(self, text: str, name: str = "To"):
        self.name = name
        self._text = text

    def fold(self, *, policy: Policy) -> str:
        return f"{self.name}: {self._text.replace(chr(10), policy.linesep)}{policy.linesep}"

    def __str__(self) -> str:
        return self._text


def to_header(name: str, address: str) -> _PreparedTo:
    """What to assign to message["To"] for this recipient."""
    address = wire_address(address)
    name = display_name(name)
    if not name:
        return _PreparedTo(address)
    if name.isascii() and "=?" not in name:
        if _SPECIALS.search(name):
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return _PreparedTo(f"{name} <{address}>")
    # One word, unfolded: readers disagree on the space between two encoded-words.
    # At most 200 characters of name keep it well inside the 998 of a header line.
    encoded = base64.b64encode(name.encode("utf-8")).decode("ascii")
    return _PreparedTo(f"=?utf-8?b?{encoded}?= <{address}>")


def subject_header(subject: str) -> str | _PreparedTo:
    """What to assign to message["Subject"]: the text itself, or, where it holds something shaped
    like an encoded-word (=?utf-8?b?…?=) that readers would decode, the whole of it encoded, so
    they show the title as written."""
    if "=?" not in subject:
        return subject
    from email.header import Header

    return _PreparedTo(Header(subject, "utf-8", header_name="Subject").encode(linesep="\n"), name="Subject")
