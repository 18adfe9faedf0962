"""SendGrid's signed Event Webhook: check the signature, then apply bounces,
complaints and unsubscribes to the list, each event once."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from sendgrid.helpers.eventwebhook import EventWebhook
from sqlalchemy import insert, select

from .store import Store
from .store import subscribers as ops
from .store.fields import column_length, fit
from .store.schema import BOUNCED, COMPLAINED, UNSUBSCRIBED, utcnow, webhook_events

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_AGE_SECONDS = 300

# What SendGrid's events mean for the list (its Event Webhook reference). Where the
# guarantee lives for webhooks: a permanent bounce, a complaint or an unsubscribe
# suppresses the address, on the list or not; nothing here makes one active.
SUPPRESSING = {
    "bounce": BOUNCED,  # unless of type "blocked": a temporary refusal, by SendGrid's own account
    "spamreport": COMPLAINED,
    "unsubscribe": UNSUBSCRIBED,
    "group_unsubscribe": UNSUBSCRIBED,
}
# A dropped message suppresses only when SendGrid dropped it for a permanent address problem.
DROPPED_REASONS = {
    "bounced address": BOUNCED,
    "invalid": BOUNCED,
    "unsubscribed address": UNSUBSCRIBED,
    "spam reporting address": COMPLAINED,
}
RECORDED_ONLY = {"processed", "deferred", "delivered", "open", "click", "dropped", "group_resubscribe"}
KNOWN_EVENTS = RECORDED_ONLY | set(SUPPRESSING)
EVENT_ID_MAX = column_length(webhook_events.c.sg_event_id)
EVENT_NAME_MAX = column_length(webhook_events.c.event)


class Refused(Exception):
    """The request is not proven to come from SendGrid; str() is safe to log."""


class Malformed(ValueError):
    """The body is not a list of SendGrid events."""


@dataclass
class Applied:
    events: int = 0
    changed: int = 0  # subscribers whose status changed
    replayed: int = 0  # events seen before: ignored
    ignored: int = 0  # event types SendGrid has not documented: counted, recorded, not applied
    invalid: int = 0  # an address that is not one, or an event without its id or type: not applied


def verify(public_key: str, body: bytes, signature: str | None, timestamp: str | None,
           now: float | None = None) -> None:
    """Raise Refused unless `body` is signed by the holder of SendGrid's key, recently."""
    if not public_key:
        raise Refused("SENDGRID_WEBHOOK_PUBLIC_KEY is not set, so no webhook call can be trusted")
    if not signature or not timestamp:
        raise Refused("the signature or timestamp header is missing")
    try:
        age = (time.time() if now is None else now) - int(timestamp)
    except ValueError:
        raise Refused("the timestamp header is not a number") from None
    if abs(age) > MAX_AGE_SECONDS:
        raise Refused(f"the timestamp is {int(age)} seconds off; more than {MAX_AGE_SECONDS} is refused as a replay")
    helper = EventWebhook()
    try:
        key = helper.convert_public_key_to_ecdsa(public_key)
    except ValueError:
        raise Refused("SENDGRID_WEBHOOK_PUBLIC_KEY is not a valid public key") from None
    try:
        valid = helper.verify_signature(body.decode("utf-8"), signature, timestamp, key)
    except (ValueError, UnicodeDecodeError):
        valid = False
    if not valid:
        raise Refused("the signature does not match the body")


def parse(body: bytes) -> list[Any]:
    """The events of a post; Malformed unless it is a JSON list. Each event is checked
    in apply(), so one odd event never keeps the others from being applied."""
    try:
        events = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Malformed("the body is not JSON") from None
    if not isinstance(events, list):
        raise Malformed("the body is not a list of events")
    return events


def _well_formed(event: Any) -> bool:
    return isinstance(event, dict) and isinstance(event.get("event"), str) and isinstance(event.get("sg_event_id"), str)


def suppression(event: dict[str, Any]) -> str | None:
    """The status this event gives its address, or None when it changes nothing."""
    kind = event["event"]
    if kind == "bounce" and str(event.get("type", "")).strip().lower() == "blocked":
        return None
    if kind == "dropped":
        return DROPPED_REASONS.get(str(event.get("reason", "")).strip().lower())
    return SUPPRESSING.get(kind)


def event_key(sg_event_id: str) -> str:
    """The id as stored: an id too long for its column, or holding control characters
    PostgreSQL refuses, is kept as its SHA-256, so replays are still recognised."""
    if len(sg_event_id) <= EVENT_ID_MAX and sg_event_id.isprintable():
        return sg_event_id
    return "sha256:" + hashlib.sha256(sg_event_id.encode("utf-8", "surrogatepass")).hexdigest()


def apply(store: Store, posted: list[Any]) -> Applied:
    """Apply a batch of events in one transaction; an event id seen before changes nothing.

    Every value is fitted to its column before the database sees it, and an
    event without its id or type (or with an address that is none) is counted
    invalid and skipped, so one odd event cannot fail the post: SendGrid would
    post it again and again, and the good events in it would never apply.
    """
    result = Applied(events=len(posted))
    events: list[dict[str, Any]] = [event for event in posted if _well_formed(event)]
    result.invalid = len(posted) - len(events)
    now = utcnow()
    with store.begin() as conn:
        ids = list({event_key(e["sg_event_id"]) for e in events})
        seen: set[str] = set()
        for start in range(0, len(ids), 500):
            seen.update(conn.execute(select(webhook_events.c.sg_event_id)
                                     .where(webhook_events.c.sg_event_id.in_(ids[start:start + 500]))).scalars())
        fresh = []
        for event in events:
            key = event_key(event["sg_event_id"])
            if key in seen:
                result.replayed += 1
                continue
            seen.add(key)
            kind = event["event"]
            fresh.append({"sg_event_id": key, "event": fit(kind, EVENT_NAME_MAX), "received_at": now})
            if kind not in KNOWN_EVENTS:
                result.ignored += 1
                continue
            status = suppression(event)
            if status is None:
                continue
            address = event.get("email")
            try:
                if not isinstance(address, str):
                    raise ops.InvalidEmail("no address")
                _, before = ops.suppress(conn, address, status, fit(f"SendGrid {kind} event {key}"))
            except ops.InvalidEmail:
                result.invalid += 1
                continue
            if before is None or not ops.is_suppressed(before):  # active, or pending confirmation
                result.changed += 1
        if fresh:
            conn.execute(insert(webhook_events), fresh)
    return result
