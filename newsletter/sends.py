"""Sends as the editor sees them: when to send, and a test copy. The queries
(queue, list, look into, cancel, resolve) live in store/sends.py.

A send freezes the built issue (subject, HTML, text) when it is queued, so
every batch, whichever scheduler sends it and whenever, carries the same email.
"""

from __future__ import annotations

import datetime as dt

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
from .tokens import TEST_COPY_SUBSCRIBER, Signer, load_secret, unsubscribe_url

TEST_MARK = "[TEST]"  # begins the subject of every test copy


def parse_when(when: str, zone: str) -> dt.datetime:
    """'now', ISO 8601 with an offset, or a local time in `zone` → naive UTC (see send_time.py)."""
    from .send_time import SendTimeError, parse_send_time

    try:
        return parse_send_time(when, zone, utcnow()).utc
    except SendTimeError as exc:
        raise SendError(str(exc)) from None


def send_test_copy(settings: Settings, provider: Provider, issue: Issue, address: str) -> str:
    """Send one copy of `issue` to `address` now, recording no send; returns the address.

    Its subject is marked [TEST]. Its unsubscribe link names no subscriber, so it
    unsubscribes nobody and opens a page saying it came from a test copy.
    """
    import dataclasses

    email, _ = email_key(address)
    link = unsubscribe_url(settings, Signer(load_secret(settings)).token(TEST_COPY_SUBSCRIBER, issue.slug))
    marked = dataclasses.replace(issue, subject=f"{TEST_MARK} {issue.subject}")
    outcomes = Collected()
    try:
        provider.send(marked, [Recipient(email=email, name="", unsubscribe_url=link)], outcomes)
    except (DeliveryFailed, OutcomeUnknown) as exc:
        raise SendError(f"the test copy was not sent: {exc}") from None
    for status, reason in outcomes.settled.values():
        if status != DeliveryStatus.SENT:
            raise SendError(f"the test copy was not sent ({status}): {reason}")
    return email


__all__ = ["SendError", "SendSummary", "active_count", "cancel", "existing_sends", "finish_if_complete", "missed", "parse_when",
           "queue", "resolve", "send_test_copy", "summaries", "summary"]
