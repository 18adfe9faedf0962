"""SendGrid, through the official `sendgrid` client.

One request carries up to 1,000 personalizations: the issue's HTML and text go
once, and each recipient gets a substitution for their unsubscribe link, their
own List-Unsubscribe headers and custom_args naming the send and delivery (for
matching webhook events).

Retries: 429 waits for X-RateLimit-Reset; 5xx and refused connections back
off and retry (SendGrid did not take the mail). Any other 4xx fails the batch
with SendGrid's own message. A request that may have reached SendGrid but
got no answer (a timeout, a dropped connection) is never retried: its outcome
is unknown and the batch goes to the editor as in doubt.
"""

from __future__ import annotations

import json
import random
import socket
import time
from urllib.error import URLError

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from ..config import ConfigError, Settings
from ..messages import ONE_CLICK, Issue, Recipient
from ..personalize import UNSUBSCRIBE_PLACEHOLDER
from . import DeliveryFailed, OutcomeUnknown, Outcomes

MAX_PERSONALIZATIONS = 1000


def _sendgrid_message(error: HTTPError) -> str:
    try:
        body = json.loads(error.body)
        return "; ".join(e.get("message", "") + (f" ({e['field']})" if e.get("field") else "") for e in body["errors"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return (error.body or b"").decode("utf-8", errors="replace")[:500] if isinstance(error.body, bytes) else str(error.body)[:500]


def _never_reached(exc: URLError) -> bool:
    """True when the request cannot have reached SendGrid (refused, no route, no DNS)."""
    reason = getattr(exc, "reason", None)
    return isinstance(reason, (ConnectionRefusedError, socket.gaierror)) and not isinstance(reason, TimeoutError)


class SendGridProvider:
    name = "sendgrid"
    max_attempts = 8
    backoff_base = 0.5  # seconds; doubled each attempt, with jitter
    max_wait = 60.0
    timeout = 60.0

    def __init__(self, settings: Settings):
        if not settings.sendgrid_api_key:
            raise ConfigError("SENDGRID_API_KEY is not set; the sendgrid provider needs it in the environment")
        self.settings = settings
        self.client = SendGridAPIClient(api_key=settings.sendgrid_api_key, host=settings.sendgrid_host.rstrip("/"))

    def payload(self, issue: Issue, recipients: list[Recipient]) -> dict:
        track = issue.send_id is not None
        send_id = str(issue.send_id)
        personalizations = []
        for r in recipients:
            url = r.unsubscribe_url
            entry: dict = {
                "to": [{"email": r.email, "name": r.name} if r.name else {"email": r.email}],
                "substitutions": {UNSUBSCRIBE_PLACEHOLDER: url},
                "headers": {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": ONE_CLICK},
            }
            if track and r.delivery_id is not None:
                entry["custom_args"] = {"send_id": send_id, "delivery_id": str(r.delivery_id)}
            personalizations.append(entry)
        sender = {"email": self.settings.sender_address}
        if self.settings.sender_name:
            sender["name"] = self.settings.sender_name
        return {
            "personalizations": personalizations,
            "from": sender,
            "subject": issue.subject,
            "content": [{"type": "text/plain", "value": issue.text}, {"type": "text/html", "value": issue.html}],
        }

    def _wait(self, attempt: int, error: HTTPError | None) -> float:
        if error is not None and error.status_code == 429:
            reset = (error.headers or {}).get("X-RateLimit-Reset")
            try:
                return min(self.max_wait, max(0.05, float(str(reset)) - time.time()))
            except (TypeError, ValueError):
                pass
        return min(self.max_wait, self.backoff_base * 2**attempt * random.uniform(0.5, 1.5))

    def _post(self, body: dict) -> None:
        last = ""
        for attempt in range(self.max_attempts):
            try:
                self.client.client.mail.send.post(request_body=body, timeout=self.timeout)
                return
            except HTTPError as exc:
                if exc.status_code != 429 and exc.status_code < 500:
                    raise DeliveryFailed(f"SendGrid refused the batch ({exc.status_code}): {_sendgrid_message(exc)}") from None
                last = f"SendGrid answered {exc.status_code}: {_sendgrid_message(exc)}"
                time.sleep(self._wait(attempt, exc))
            except URLError as exc:
                if not _never_reached(exc):
                    raise OutcomeUnknown(f"no answer from SendGrid ({exc.reason}); it may have taken the batch") from None
                last = f"cannot reach SendGrid ({exc.reason})"
                time.sleep(self._wait(attempt, None))
            except (TimeoutError, ConnectionError, OSError) as exc:
                raise OutcomeUnknown(f"no answer from SendGrid ({exc}); it may have taken the batch") from None
        raise DeliveryFailed(f"gave up after {self.max_attempts} attempts; {last}", retryable=True)

    def send(self, issue: Issue, recipients: list[Recipient], outcomes: Outcomes) -> dict[int, str]:
        # The request is taken whole or not at all: nothing to settle one by one.
        if len(recipients) > MAX_PERSONALIZATIONS:
            raise ValueError(f"a SendGrid batch holds at most {MAX_PERSONALIZATIONS} recipients")
        self._post(self.payload(issue, recipients))
        return {}
