"""Every value checked at the door, before the database sees it.

CSV import, `subscribers add` and the webhooks all come through here, so
SQLite (which stores anything) and PostgreSQL (which refuses NUL bytes and
over-long strings with an error that would roll back a whole file) agree:
a bad value is a clear per-row error and the good rows are kept.
"""

from __future__ import annotations

import re
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Column

from ..errors import NewsletterError
from .schema import subscribers



def column_length(column: Column[Any]) -> int:
    """The length a String column allows, read from the schema so the two never disagree."""
    length = getattr(column.type, "length", None)
    assert isinstance(length, int), f"{column} has no length"
    return length


NAME_MAX = column_length(subscribers.c.name)
SOURCE_MAX = column_length(subscribers.c.source)
EMAIL_MAX = column_length(subscribers.c.email)

# Line breaks and tabs become a space; any other control character is refused.
_BREAKS = re.compile(r"[\t\n\v\f\r\x85\u2028\u2029]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class InvalidEmail(NewsletterError, ValueError):
    """Not an address mail can be sent to; str() says why."""


class InvalidField(NewsletterError, ValueError):
    """A value that cannot be stored as given; str() names the field and what to fix."""


class ControlCharacter(InvalidField):
    """The value holds a control character other than a line break or tab."""


class TooLong(InvalidField):
    """The value is longer than its column."""


def normalise_address(address: str, *, deliverable: bool = True) -> tuple[str, str]:
    """(the address as stored, its key), or InvalidEmail.

    Stored as email-validator normalises it (domain lower-cased, Unicode
    normalised), with an internationalised domain in its ASCII (xn--) form,
    which every provider can deliver. Non-ASCII before the @ needs SMTPUTF8,
    which SendGrid and many SMTP servers do not offer, so it is refused;
    `deliverable=False` accepts it, for finding or suppressing such an address
    (an earlier version let them in). The key folds case in the whole address: ADA@Example.com and
    ada@example.com are one person. No DNS is asked.
    """
    given = address.strip()
    if not given:
        raise InvalidEmail("the address is empty")
    if len(given) > EMAIL_MAX:
        raise InvalidEmail(f"the address is {len(given)} characters long; an address has at most 254")
    try:
        checked = validate_email(given, check_deliverability=False, allow_smtputf8=not deliverable)
    except EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from None
    stored = checked.ascii_email or checked.normalized
    return stored, stored.casefold()


def clean_text(value: str, what: str, limit: int | None = None) -> tuple[str, bool]:
    """(the value with line breaks and tabs made single spaces and the ends trimmed,
    whether that changed anything inside it), or InvalidField for a control character
    or a value longer than `limit`.

    Nothing else is interpreted: text that looks like an RFC 2047 encoded-word
    (=?utf-8?q?…?=) is kept literally, and is encoded as text wherever it is sent.
    """
    cleaned = _BREAKS.sub(" ", value).strip()
    changed = cleaned != value.strip()
    found = _CONTROL.search(cleaned)
    if found:
        raise ControlCharacter(f"the {what} contains the control character U+{ord(found.group()):04X}; remove it")
    if limit is not None and len(cleaned) > limit:
        raise TooLong(f"the {what} is {len(cleaned)} characters long; at most {limit} fit")
    return cleaned, changed


def clean_name(value: str) -> str:
    return clean_text(value, "name", NAME_MAX)[0]


def fit(value: str, limit: int = SOURCE_MAX) -> str:
    """A description we make ourselves (a source such as "import of FILE"), cut to fit its column."""
    cleaned = _CONTROL.sub("", _BREAKS.sub(" ", value))
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
