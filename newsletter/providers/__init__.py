"""Email providers behind one small interface.

A provider sends one batch of recipients a copy of an issue. It returns the
recipients it refused (delivery id → reason) and raises:
- DeliveryFailed when it is sure nothing of the batch was accepted;
- OutcomeUnknown when some or all may have been accepted, so that the batch
  must never be sent again without the editor's say-so.
"""

from __future__ import annotations

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


# By provider name: can a delivery be sent again without reaching the reader twice?
# Recovery asks this of the provider recorded on a batch, which may not be the one running now.
IDEMPOTENT = {"outbox": True, "smtp": False, "sendgrid": False}


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


__all__ = ["DeliveryFailed", "IDEMPOTENT", "OutcomeUnknown", "Provider", "Recipient", "get_provider"]
