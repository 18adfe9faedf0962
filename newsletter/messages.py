"""One recipient's copy of an issue: the frozen issue plus their own unsubscribe link.

Two ways to the same message. `build_message` builds it with the email package:
the reference, about 1.7 ms of CPU a copy. `personal_copy` builds the issue's
message once (`Prepared`) with every per-recipient part left open, then fills
those in for each recipient, a few microseconds a copy; tests parse both and
compare them recipient by recipient (tests/test_personal_copy.py).
"""

from __future__ import annotations

import binascii
import hashlib
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate
from functools import lru_cache
from html import escape
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from .addressing import subject_header, to_header
from .config import Settings
from .personalize import UNSUBSCRIBE_PLACEHOLDER, personal_html, personal_text

if TYPE_CHECKING:
    import datetime as dt

ONE_CLICK = "List-Unsubscribe=One-Click"  # RFC 8058
# Headers are written with SMTP's hard limit of 998: folding at 78 would turn a
# long List-Unsubscribe URL into RFC 2047 words that mail apps cannot follow.
HEADER_POLICY = SMTP.clone(max_line_length=998)
# Bodies are encoded under this one: quoted-printable lines of at most 76 (RFC 2045);
# SMTP's own 78 would make lines that strict relays refuse.
BODY_POLICY = SMTP.clone(max_line_length=76)


@dataclass(frozen=True)
class Issue:
    """What a send carries, rendered and inlined once when it was queued."""

    slug: str
    subject: str
    html: str
    text: str
    send_id: int | None = None  # None for a test copy
    message_key: str = ""  # makes this send's Message-IDs its own (`send_key`); "" for a test copy


@dataclass(slots=True)  # made once per recipient: slots keep that cheap
class Recipient:
    email: str
    name: str
    unsubscribe_url: str
    subscriber_id: int | None = None
    delivery_id: int | None = None  # None for a test copy


# -- headers that name the list and the message --------------------------------
def list_id(settings: Settings) -> str:
    """RFC 2919 List-Id: the site's name, then an id made of that name and base_url's domain,
    e.g. "The Newsletter" <the-newsletter.example.com>."""
    host = urlsplit(settings.base_url).hostname or "localhost"
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        host = "localhost"
    label = re.sub(r"[^a-z0-9]+", "-", settings.site_name.lower()).strip("-")[:60] or "newsletter"
    name = " ".join(re.sub(r"[\x00-\x1f\x7f]", " ", settings.site_name).split())
    phrase = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"' if name.isascii() else Header(name, "utf-8").encode()
    return f"{phrase} <{label}.{host}>"


def send_key(token: Callable[[int, str], str], send_id: int, queued_at: dt.datetime) -> str:
    """What makes a send's Message-IDs its own, from `token` (tokens.Signer.token, so keyed by the
    secret: nobody can guess them) and when the send was queued (so two databases that share a
    secret still differ). The same for the send for ever: a copy sent again after a crash keeps
    its Message-ID, which lets mail programs see it as the same message."""
    return token(send_id, f"message-id.{queued_at:%Y%m%dT%H%M%S.%f}")


def message_id(settings: Settings, issue: Issue, recipient: Recipient) -> str:
    """Random to anyone without the secret, unique across databases, stable for a delivery."""
    domain = settings.sender_address.rpartition("@")[2] or "localhost"
    if recipient.delivery_id is None or not issue.message_key:
        return f"<{uuid.uuid4().hex}@{domain}>"  # a test copy is a new message every time
    digest = hashlib.blake2b(str(recipient.delivery_id).encode(), key=_id_key(issue.message_key), digest_size=16)
    return f"<{digest.hexdigest()}@{domain}>"


@lru_cache(maxsize=16)
def _id_key(message_key: str) -> bytes:
    return hashlib.sha256(message_key.encode()).digest()


@lru_cache(maxsize=1)
def _date_at(second: int) -> str:
    return formatdate(second, usegmt=True)


def _date() -> str:
    """The Date header value; formatted once a second, not once a copy."""
    return _date_at(int(time.time()))


# -- the reference: the email package, recipient by recipient -------------------
def _shared_headers(message: EmailMessage, settings: Settings, issue: Issue) -> None:
    message["From"] = settings.sender_header
    message["Subject"] = subject_header(issue.subject)
    message["List-Unsubscribe-Post"] = ONE_CLICK
    message["List-Id"] = list_id(settings)


def build_message(settings: Settings, issue: Issue, recipient: Recipient) -> EmailMessage:
    """The complete message for one recipient, built afresh with the email package."""
    message = EmailMessage(policy=BODY_POLICY)
    message["To"] = to_header(recipient.name, recipient.email)
    message["Date"] = _date()
    message["Message-ID"] = message_id(settings, issue, recipient)
    message["List-Unsubscribe"] = f"<{recipient.unsubscribe_url}>"
    _shared_headers(message, settings, issue)
    # Quoted-printable keeps the .eml readable as text; 76-column lines keep old relays happy.
    message.set_content(personal_text(issue.text, recipient.unsubscribe_url), cte="quoted-printable")
    message.add_alternative(personal_html(issue.html, recipient.unsubscribe_url), subtype="html", cte="quoted-printable")
    message.policy = HEADER_POLICY
    return message


# -- the fast way: the issue's message made once, the recipient's parts filled in ---
_PLACEHOLDER = UNSUBSCRIBE_PLACEHOLDER.encode("ascii")
_SAFE_HEADER_TEXT = re.compile(r"[ -~]{1,900}")  # printable ASCII that fits a header line


def _qp_line(line: bytes) -> bytes:
    """One body line, quoted-printable in lines of at most 76 (RFC 2045), with CRLF soft breaks."""
    return binascii.b2a_qp(line, quotetabs=False, istext=False, header=False).replace(b"=\n", b"=\r\n")


class Prepared:
    """An issue's message, built once with the email package, with each recipient's parts open.

    Open are the To, Date, Message-ID and List-Unsubscribe headers, and each body
    line that holds the unsubscribe link. Quoted-printable encodes line by line,
    so such a line is encoded on its own for each recipient and the rest of the
    body is shared. Everything the email package made stays as it made it.
    """

    def __init__(self, settings: Settings, issue: Issue):
        self.settings, self.issue = settings, issue
        marker = f"nlslot{secrets.token_hex(6)}n"
        lines: list[tuple[bytes, Callable[[str], bytes]]] = []  # per open line: its text, how to put the link in

        def open_lines(body: str, link: Callable[[str], bytes]) -> str:
            kept = []
            for line in body.encode("utf-8").splitlines():  # as the email package splits a body
                if _PLACEHOLDER in line:
                    kept.append(f"{marker}{len(lines)}x".encode("ascii"))
                    lines.append((line, link))
                else:
                    kept.append(line)
            return b"\n".join(kept).decode("utf-8") + "\n"

        text = open_lines(issue.text, lambda url: url.encode("ascii"))
        html = open_lines(issue.html, lambda url: escape(url, quote=True).encode("ascii"))
        message = EmailMessage(policy=BODY_POLICY)
        _shared_headers(message, settings, issue)
        message.set_content(text, cte="quoted-printable")
        message.add_alternative(html, subtype="html", cte="quoted-printable")
        message.policy = HEADER_POLICY
        data = message.as_bytes()
        self.pieces: list[bytes] = []
        self.lines = lines
        for n in range(len(lines)):
            before, found, data = data.partition(f"\r\n{marker}{n}x\r\n".encode("ascii"))
            if not found:
                raise ValueError("the email package moved a personal line")  # never seen; the caller falls back
            self.pieces.append(before + b"\r\n")
            data = b"\r\n" + data
        self.pieces.append(data)
        if marker.encode("ascii") in b"".join(self.pieces):
            raise ValueError("a personal line was left open")

    def copy(self, recipient: Recipient, utf8: bool = False) -> bytes:
        """The recipient's copy, as `build_message(...).as_bytes()` would be read by a mail program."""
        url = recipient.unsubscribe_url
        to = str(to_header(recipient.name, recipient.email))
        if not (_SAFE_HEADER_TEXT.fullmatch(to) and _SAFE_HEADER_TEXT.fullmatch(url)):
            # Anything but plain printable ASCII goes the email package's way.
            return build_message(self.settings, self.issue, recipient).as_bytes(policy=HEADER_POLICY.clone(utf8=utf8))
        head = (f"To: {to}\r\nDate: {_date()}\r\nMessage-ID: {message_id(self.settings, self.issue, recipient)}\r\n"
                f"List-Unsubscribe: <{url}>\r\n").encode("ascii")
        out = [head]
        for piece, (line, link) in zip(self.pieces, self.lines, strict=False):
            out.append(piece)
            out.append(_qp_line(line.replace(_PLACEHOLDER, link(url))))
        out.append(self.pieces[-1])
        return b"".join(out)


_prepared: dict[tuple[int, int], tuple[Settings, Issue, Prepared | None]] = {}


def prepared(settings: Settings, issue: Issue) -> Prepared | None:
    """The issue's prepared message, made once for these very objects (the scheduler keeps one
    Issue per send); None if it cannot be prepared, and then each copy is built whole."""
    found = _prepared.get((id(settings), id(issue)))
    if found is not None and found[0] is settings and found[1] is issue:
        return found[2]
    try:
        ready: Prepared | None = Prepared(settings, issue)
    except ValueError:
        ready = None
    if len(_prepared) >= 8:
        _prepared.pop(next(iter(_prepared)))
    _prepared[(id(settings), id(issue))] = (settings, issue, ready)
    return ready


def personal_copy(settings: Settings, issue: Issue, recipient: Recipient, utf8: bool = False) -> bytes:
    """The bytes of one recipient's copy, ready for the outbox or SMTP's DATA."""
    ready = prepared(settings, issue)
    if ready is None:
        return build_message(settings, issue, recipient).as_bytes(policy=HEADER_POLICY.clone(utf8=utf8))
    return ready.copy(recipient, utf8)
