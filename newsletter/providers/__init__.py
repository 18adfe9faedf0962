"""Email providers behind one small interface.

`send(issue, recipients, outcomes)` sends one batch a copy of an issue and
reports what happened to each recipient through `outcomes` (an `Outcomes`):

- `outcomes.settle(recipient, status, reason)` records one recipient's outcome
  (a DeliveryStatus: SENT, FAILED with the server's code and text, DEFERRED for
  a temporary refusal, IN_DOUBT when it may have been accepted). The scheduler
  makes it durable before it returns.
- `outcomes.may_send(count)` is asked before each message (or request of
  `count` recipients) goes on the wire. It waits for the scheduler's pace;
  False means stop at once and leave the rest unsettled (the lease was lost,
  or the scheduler is stopping).
- `outcomes.slow_down(pause)` says the provider asked us to slow down (a 429,
  an SMTP 421): the scheduler's pace drops for a while, and all its workers
  send nothing for `pause` seconds.

Two kinds of provider, told apart by `SETTLES_EACH` (by provider name):
- Per message (smtp, outbox): settles every recipient it put on the wire before
  it puts the next one there, in the order given. A recipient left unsettled
  when it returns was never tried. So after a crash at most the first
  unsettled recipient of a batch can have been on the wire.
- Per batch (sendgrid): the request is taken whole or not at all. A normal
  return means every recipient it did not settle (or return as refused,
  delivery id → reason) was accepted, unless `may_send` said no, when nothing
  was sent.

Either kind raises, for the recipients still unsettled:
- DeliveryFailed when it is sure none of them was accepted (`retryable`: a
  temporary cause, so they are deferred; otherwise they fail);
- OutcomeUnknown when some or all may have been accepted, so they are never
  sent again without the editor's say-so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Protocol

from ..config import ConfigError, Settings
from ..messages import Issue, Recipient
from ..statuses import DeliveryStatus


class DeliveryFailed(Exception):
    """Nothing of the batch was accepted; `retryable` says whether trying later may work."""

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


class OutcomeUnknown(Exception):
    """The provider may have accepted part or all of the batch."""


class BeforeTheWire(Exception):
    """An unexpected error before the message being sent began (MAIL, RCPT): nothing of it can have been
    accepted, so the send is held with nobody in doubt. Its text is the original error's."""


class Outcomes(Protocol):
    def settle(self, recipient: Recipient, status: DeliveryStatus, reason: str = "") -> None: ...

    def may_send(self, count: int = 1) -> bool: ...

    def slow_down(self, pause: float = 0.0) -> None: ...


class Collected:
    """Outcomes kept in memory: for a test copy, which is recorded nowhere."""

    def __init__(self) -> None:
        self.settled: dict[int, tuple[DeliveryStatus, str]] = {}

    def settle(self, recipient: Recipient, status: DeliveryStatus, reason: str = "") -> None:
        self.settled[id(recipient)] = (status, reason)

    def may_send(self, count: int = 1) -> bool:
        return True

    def slow_down(self, pause: float = 0.0) -> None:
        pass


class Provider(Protocol):
    name: str

    def send(self, issue: Issue, recipients: list[Recipient], outcomes: Outcomes) -> dict[int, str]: ...


@dataclass(frozen=True)
class ProviderKind:
    """A provider as the rest of the system knows it: the one registry entry per provider."""

    name: str  # NEWSLETTER_PROVIDER's value, and what a batch records as its provider
    target: str  # "module:Class"; imported only when chosen, so each brings in its own library only then
    # Can a delivery be sent again without reaching the reader twice? Recovery asks this of
    # the provider recorded on a batch, which may not be the one running now.
    idempotent: bool
    # Does it settle each recipient before the next goes on the wire (see above)?
    settles_each: bool

    def load(self) -> Callable[[Settings], Provider]:
        module, _, name = self.target.partition(":")
        found: Callable[[Settings], Provider] = getattr(import_module(module), name)
        return found


REGISTRY: dict[str, ProviderKind] = {kind.name: kind for kind in (
    ProviderKind("outbox", "newsletter.providers.outbox:OutboxProvider", idempotent=True, settles_each=True),
    ProviderKind("smtp", "newsletter.providers.smtp:SmtpProvider", idempotent=False, settles_each=True),
    ProviderKind("sendgrid", "newsletter.providers.sendgrid:SendGridProvider", idempotent=False, settles_each=False),
)}
IDEMPOTENT: dict[str, bool] = {kind.name: kind.idempotent for kind in REGISTRY.values()}
SETTLES_EACH: dict[str, bool] = {kind.name: kind.settles_each for kind in REGISTRY.values()}


def get_provider(settings: Settings) -> Provider:
    """The provider the settings choose (NEWSLETTER_PROVIDER or newsletter.toml)."""
    kind = REGISTRY.get(settings.provider)
    if kind is None:
        raise ConfigError(f"provider: '{settings.provider}' is not one of {', '.join(REGISTRY)}")
    return kind.load()(settings)


__all__ = ["IDEMPOTENT", "REGISTRY", "SETTLES_EACH", "Collected", "DeliveryFailed", "OutcomeUnknown", "Outcomes", "Provider",
           "ProviderKind", "Recipient",
           "get_provider"]
