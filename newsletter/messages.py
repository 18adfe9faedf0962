"""One recipient's copy of an issue: the frozen issue plus their own unsubscribe link."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate

from .addressing import to_header
from .config import Settings
from .personalize import personal_html, personal_text

ONE_CLICK = "List-Unsubscribe=One-Click"  # RFC 8058
# Headers are written with SMTP's hard limit of 998: folding at 78 would turn a
# long List-Unsubscribe URL into RFC 2047 words that mail apps cannot follow.
# The bodies are still encoded in 76-column lines under the SMTP policy.
HEADER_POLICY = SMTP.clone(max_line_length=998)


@dataclass(frozen=True)
class Issue:
    """What a send carries, rendered and inlined once when it was queued."""

    slug: str
    subject: str
    html: str
    text: str
    send_id: int | None = None  # None for a test copy


@dataclass(slots=True)  # made once per recipient: slots keep that cheap
class Recipient:
    email: str
    name: str
    unsubscribe_url: str
    subscriber_id: int | None = None
    delivery_id: int | None = None  # None for a test copy


def message_id(settings: Settings, issue: Issue, recipient: Recipient) -> str:
    """Stable for a delivery, so a copy sent again is recognisably the same message."""
    domain = settings.sender_address.rpartition("@")[2] or "localhost"
    if recipient.delivery_id is None:
        import uuid

        return f"<test.{uuid.uuid4().hex}@{domain}>"
    return f"<send{issue.send_id}.delivery{recipient.delivery_id}@{domain}>"


def build_message(settings: Settings, issue: Issue, recipient: Recipient) -> EmailMessage:
    """The complete message for one recipient; costs two substitutions, no rendering."""
    message = EmailMessage(policy=SMTP)
    message["From"] = settings.sender
    message["To"] = to_header(recipient.name, recipient.email)  # type: ignore[assignment]
    message["Subject"] = issue.subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = message_id(settings, issue, recipient)
    message["List-Unsubscribe"] = f"<{recipient.unsubscribe_url}>"
    message["List-Unsubscribe-Post"] = ONE_CLICK
    # Quoted-printable keeps the .eml readable as text; 76-column lines keep old relays happy.
    message.set_content(personal_text(issue.text, recipient.unsubscribe_url), cte="quoted-printable")
    message.add_alternative(personal_html(issue.html, recipient.unsubscribe_url), subtype="html", cte="quoted-printable")
    message.policy = HEADER_POLICY
    return message
