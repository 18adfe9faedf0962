"""One retry policy for every provider: try again only what was certainly not taken.

A provider raises `NotTaken` for an answer that proves the message (or the
batch) never got in: a refused connection, a rate limit. Anything that may
have been accepted is never retried here: the provider raises OutcomeUnknown
instead, and only the editor may send it again.

The waiting is tenacity's (exponential backoff with full jitter), unless the
provider was told how long to wait (`retry_after`, e.g. SendGrid's
X-RateLimit-Reset), which wins but is capped at `max_wait`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

T = TypeVar("T")


class NotTaken(Exception):
    """The provider certainly did not take it: safe to try again.
    `retry_after`: seconds the provider asked us to wait, when it said."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8
    base: float = 0.5  # seconds; the ceiling of the first wait, doubled each attempt
    max_wait: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        asked = getattr(error, "retry_after", None)
        if asked is not None:
            return float(min(self.max_wait, max(0.0, asked)))
        return float(wait_random_exponential(multiplier=self.base, max=self.max_wait)(state))

    def call(self, attempt: Callable[[], T]) -> T:
        """`attempt()`'s result; NotTaken is tried again, up to `attempts` times in all.

        Raises DeliveryFailed (retryable: it may work later) with the last reason
        when every attempt was refused; any other exception passes through at once.
        """
        from . import DeliveryFailed

        retrying = Retrying(stop=stop_after_attempt(self.attempts), wait=self._wait,
                            retry=retry_if_exception_type(NotTaken), sleep=self.sleep, reraise=True)
        try:
            return retrying(attempt)
        except NotTaken as exc:
            raise DeliveryFailed(f"gave up after {self.attempts} attempts: {exc}", retryable=True) from None
