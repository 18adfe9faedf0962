"""Sends as the editor sees them: when to send, and a test copy. The queries
(queue, list, look into, cancel, resolve) live in store/sends.py.

A send freezes the built issue (subject, HTML, text) when it is queued, so
every batch, whichever scheduler sends it and whenever, carries the same email.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .config import Settings
from .messages import Issue, Recipient
from .providers import Collected, DeliveryFailed, OutcomeUnknown, Provider
from .store.schema import DeliveryStatus, utcnow
from .store.sends import (
    SendError,
    SendSummary,
    active_count,
    cancel,
    existing_sends,
    finish_if_complete,
    missed,
    queue,
    resolve,
    summaries,
    summary,
)
from .store.subscribers import email_key
from .tokens import Signer, load_secret, unsubscribe_url


def parse_when(when: str, zone: str) -> dt.datetime:
    """'now', ISO 8601 with an offset, or a local time in `zone` → naive UTC."""
    if when.strip().lower() == "now":
        return utcnow()
    try:
        moment = dt.datetime.fromisoformat(when.strip())
    except ValueError:
        raise SendError(
            f"'{when}' is not a time; write 'now', 2017-03-06T09:00+00:00, or 2017-03-06 09:00 with --tz Europe/London"
        ) from None
    if moment.tzinfo is None:
        try:
            moment = moment.replace(tzinfo=ZoneInfo(zone))
        except (ZoneInfoNotFoundError, ValueError):
            raise SendError(f"'{zone}' is not a time zone; use a name such as Europe/London or UTC") from None
    return moment.astimezone(dt.UTC).replace(tzinfo=None)


def send_test_copy(settings: Settings, provider: Provider, issue: Issue, address: str) -> str:
    """Send one copy of `issue` to `address` now, recording no send; returns the address.

    Its unsubscribe link is signed for no subscriber, so it unsubscribes nobody.
    """
    email, _ = email_key(address)
    link = unsubscribe_url(settings, Signer(load_secret(settings)).token(0, issue.slug))
    outcomes = Collected()
    try:
        provider.send(issue, [Recipient(email=email, name="", unsubscribe_url=link)], outcomes)
    except (DeliveryFailed, OutcomeUnknown) as exc:
        raise SendError(f"the test copy was not sent: {exc}") from None
    for status, reason in outcomes.settled.values():
        if status != DeliveryStatus.SENT:
            raise SendError(f"the test copy was not sent ({status}): {reason}")
    return email


__all__ = ["SendError", "SendSummary", "active_count", "cancel", "existing_sends", "finish_if_complete", "missed", "parse_when",
           "queue", "resolve", "send_test_copy", "summaries", "summary"]
