"""Email providers behind one small interface.

`send(issue, recipients, outcomes)` sends one batch a copy of an issue and
reports what happened to each recipient through `outcomes` (an `Outcomes`):

- `outcomes.settle(recipient, status, reason)` records one recipient's outcome
  (a DeliveryStatus: SENT, FAILED with the server's code and text, DEFERRED for
  a temporary refusal, IN_DOUBT when it may have been accepted). The scheduler
  makes it durable before it returns.
- `outcomes.may_send()` is asked before each message goes on the wire; False
  means the scheduler lost its lease: stop at once and leave the rest unsettled.

Two kinds of provider, told apart by `SETTLES_EACH` (by provider name):
- Per message (smtp, outbox): settles every recipient it put on the wire before
  it puts the next one there, in the order given. A recipient left unsettled
  when it returns was never tried. So after a crash at most the first
  unsettled recipient of a batch can have been on the wire.
- Per batch (sendgrid): the request is taken whole or not at all. A normal
  return means every recipient it did not settle (or return as refused,
  delivery id → reason) was accepted.

Either kind raises, for the recipients still unsettled:
- DeliveryFailed when it is sure none of them was accepted (`retryable`: a
  temporary cause, so they are deferred; otherwise they fail);
- OutcomeUnknown when some or all may have been accepted, so they are never
  sent again without the editor's say-so.
"""

from __future__ import annotations

from typing import Protocol

from ..config import ConfigError, Settings
from ..messages import Issue, Recipient
from ..store.schema import DeliveryStatus


class DeliveryFailed(Exception):
    """Nothing of the batch was accepted; `retryable` says whether trying later may work."""

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


class OutcomeUnknown(Exception):
    """The provider may have accepted part or all of the batch."""


class Outcomes(Protocol):
    def settle(self, recipient: Recipient, status: DeliveryStatus, reason: str = "") -> None: ...

    def may_send(self) -> bool: ...


class Collected:
    """Outcomes kept in memory: for a test copy, which is recorded nowhere."""

    def __init__(self) -> None:
        self.settled: dict[int, tuple[DeliveryStatus, str]] = {}

    def settle(self, recipient: Recipient, status: DeliveryStatus, reason: str = "") -> None:
        self.settled[id(recipient)] = (status, reason)

    def may_send(self) -> bool:
        return True


class Provider(Protocol):
    name: str

    def send(self, issue: Issue, recipients: list[Recipient], outcomes: Outcomes) -> dict[int, str]: ...


# By provider name: can a delivery be sent again without reaching the reader twice?
# Recovery asks this of the provider recorded on a batch, which may not be the one running now.
IDEMPOTENT = {"outbox": True, "smtp": False, "sendgrid": False}
# By provider name: does it settle each recipient before the next goes on the wire (see above)?
SETTLES_EACH = {"outbox": True, "smtp": True, "sendgrid": False}


def get_provider(settings: Settings) -> Provider:
    """The provider the settings choose (NEWSLETTER_PROVIDER or newsletter.toml)."""
    if settings.provider == "outbox":
        from .outbox import OutboxProvider

        return OutboxProvider(settings)
    if settings.provider == "smtp":
        from .smtp import SmtpProvider

        return SmtpProvider(settings)
    if settings.provider == "sendgrid":
        from .sendgrid import SendGridProvider

        return SendGridProvider(settings)
    raise ConfigError(f"provider: '{settings.provider}' is not one of outbox, smtp, sendgrid")


__all__ = ["SETTLES_EACH", "Collected", "DeliveryFailed", "IDEMPOTENT", "OutcomeUnknown", "Outcomes", "Provider", "Recipient",
           "get_provider"]
