"""Every status, defined once: subscribers, sends, batches and deliveries.

Kept apart from the schema so that the command line can name them without
loading the database layer (a fast `newsletter --help`).
"""

from __future__ import annotations

from enum import StrEnum


class SubscriberStatus(StrEnum):
    """A subscriber's status: the one definition. Only ACTIVE is sent to; the
    suppressions are kept for good (see store/subscribers.py). PENDING signed up
    through the form and has not confirmed yet (see signup.py): never sent issues."""

    ACTIVE = "active"
    PENDING = "pending"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


ACTIVE = SubscriberStatus.ACTIVE
PENDING = SubscriberStatus.PENDING
UNSUBSCRIBED = SubscriberStatus.UNSUBSCRIBED
BOUNCED = SubscriberStatus.BOUNCED
COMPLAINED = SubscriberStatus.COMPLAINED
STATUSES: tuple[str, ...] = tuple(SubscriberStatus)
SUPPRESSED: tuple[str, ...] = (UNSUBSCRIBED, BOUNCED, COMPLAINED)


class SendStatus(StrEnum):
    """A send as the editor sees it. QUEUED, HELD and SENDING may still mail people."""

    QUEUED = "queued"
    HELD = "held"  # overdue, or stopped by an unexpected error: waits for the editor
    SENDING = "sending"
    SENT = "sent"  # every delivery has an outcome (some may be failed or in doubt)
    CANCELLED = "cancelled"


class BatchStatus(StrEnum):
    """A batch is the unit a scheduler claims; its deliveries carry the outcomes."""

    PENDING = "pending"  # claimable once `not_before` has passed
    IN_FLIGHT = "in_flight"  # claimed under a scheduler's lease
    DONE = "done"  # every delivery has a final outcome


class DeliveryStatus(StrEnum):
    """One recipient's outcome in one send: the one definition (see scheduler.py)."""

    PENDING = "pending"  # not yet tried
    SENT = "sent"  # accepted by the provider
    FAILED = "failed"  # refused for good, or deferred too long; `error` holds the answer
    DEFERRED = "deferred"  # refused for now; tried again at `next_attempt_at`
    SKIPPED = "skipped"  # unsubscribed (or bounced…) after the send was frozen
    IN_DOUBT = "in_doubt"  # may have been accepted: only the editor may send it again


# Deliveries the scheduler may still send, and those whose outcome is settled.
UNSETTLED: tuple[str, ...] = (DeliveryStatus.PENDING, DeliveryStatus.DEFERRED)
NEEDS_EDITOR: tuple[str, ...] = (DeliveryStatus.FAILED, DeliveryStatus.DEFERRED, DeliveryStatus.IN_DOUBT)
