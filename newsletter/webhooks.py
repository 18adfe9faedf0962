"""SendGrid's signed Event Webhook: check the signature, then apply bounces,
complaints and unsubscribes to the list, each event once."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from sendgrid.helpers.eventwebhook import EventWebhook
from sqlalchemy import insert, select

from .store import Store
from .store import subscribers as ops
from .store.schema import subscribers, utcnow, webhook_events

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_AGE_SECONDS = 300

EVENT_STATUS = {
    "bounce": "bounced",
    "dropped": "bounced",
    "spamreport": "complained",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}


class Refused(Exception):
    """The request is not proven to come from SendGrid; str() is safe to log."""


class Malformed(ValueError):
    """The body is not a list of SendGrid events."""


@dataclass
class Applied:
    events: int = 0
    changed: int = 0  # subscribers whose status changed
    replayed: int = 0  # events seen before: ignored


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


def parse(body: bytes) -> list[dict]:
    try:
        events = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Malformed("the body is not JSON") from None
    if not isinstance(events, list):
        raise Malformed("the body is not a list of events")
    for n, event in enumerate(events):
        if not isinstance(event, dict) or not isinstance(event.get("event"), str) or not isinstance(event.get("sg_event_id"), str):
            raise Malformed(f"event {n} has no 'event' or 'sg_event_id'")
        if event["event"] in EVENT_STATUS and not isinstance(event.get("email"), str):
            raise Malformed(f"event {n} ({event['event']}) has no 'email'")
    return events


def apply(store: Store, events: list[dict]) -> Applied:
    """Apply a batch of events in one transaction; an event id seen before changes nothing."""
    result = Applied(events=len(events))
    now = utcnow()
    with store.begin() as conn:
        ids = list({e["sg_event_id"] for e in events})
        seen: set[str] = set()
        for start in range(0, len(ids), 500):
            seen.update(conn.execute(select(webhook_events.c.sg_event_id)
                                     .where(webhook_events.c.sg_event_id.in_(ids[start:start + 500]))).scalars())
        fresh = []
        for event in events:
            if event["sg_event_id"] in seen:
                result.replayed += 1
                continue
            seen.add(event["sg_event_id"])
            fresh.append({"sg_event_id": event["sg_event_id"], "event": event["event"][:40], "received_at": now})
            status = EVENT_STATUS.get(event["event"])
            if status is None:
                continue
            try:
                _, key = ops.email_key(event["email"])
            except ops.InvalidEmail:
                continue
            row = conn.execute(select(subscribers.c.id, subscribers.c.status).where(subscribers.c.email_key == key)).first()
            if row is None or row.status == status:
                continue
            if ops.set_status(conn, row.id, status, f"SendGrid {event['event']} event"):
                result.changed += 1
        if fresh:
            conn.execute(insert(webhook_events), fresh)
    return result
