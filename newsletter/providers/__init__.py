"""Email providers behind one small interface.

A provider sends one batch of recipients a copy of an issue. It returns the
recipients it refused (delivery id → reason) and raises:
- DeliveryFailed when it is sure nothing of the batch was accepted;
- OutcomeUnknown when some or all may have been accepted, so that the batch
  must never be sent again without the editor's say-so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Protocol

from ..config import ConfigError, Settings
from ..messages import Issue, Recipient


class DeliveryFailed(Exception):
    """Nothing of the batch was accepted; `retryable` says whether trying later may work."""

    def __init__(self, message: str, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


class OutcomeUnknown(Exception):
    """The provider may have accepted part or all of the batch."""


class Provider(Protocol):
    name: str

    def send(self, issue: Issue, recipients: list[Recipient]) -> dict[int, str]: ...


@dataclass(frozen=True)
class ProviderKind:
    """A provider as the rest of the system knows it: the one registry entry per provider."""

    name: str  # NEWSLETTER_PROVIDER's value, and what a batch records as its provider
    target: str  # "module:Class"; imported only when chosen, so each brings in its own library only then
    # Can a delivery be sent again without reaching the reader twice? Recovery asks this of
    # the provider recorded on a batch, which may not be the one running now.
    idempotent: bool

    def load(self) -> Callable[[Settings], Provider]:
        module, _, name = self.target.partition(":")
        found: Callable[[Settings], Provider] = getattr(import_module(module), name)
        return found


REGISTRY: dict[str, ProviderKind] = {kind.name: kind for kind in (
    ProviderKind("outbox", "newsletter.providers.outbox:OutboxProvider", idempotent=True),
    ProviderKind("smtp", "newsletter.providers.smtp:SmtpProvider", idempotent=False),
    ProviderKind("sendgrid", "newsletter.providers.sendgrid:SendGridProvider", idempotent=False),
)}
IDEMPOTENT: dict[str, bool] = {kind.name: kind.idempotent for kind in REGISTRY.values()}


def get_provider(settings: Settings) -> Provider:
    """The provider the settings choose (NEWSLETTER_PROVIDER or newsletter.toml)."""
    kind = REGISTRY.get(settings.provider)
    if kind is None:
        raise ConfigError(f"provider: '{settings.provider}' is not one of {', '.join(REGISTRY)}")
    return kind.load()(settings)


__all__ = ["IDEMPOTENT", "REGISTRY", "DeliveryFailed", "OutcomeUnknown", "Provider", "ProviderKind", "Recipient",
           "get_provider"]
