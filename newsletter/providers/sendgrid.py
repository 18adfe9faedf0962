"""SendGrid, through the official `sendgrid` client.

One request carries up to 1,000 personalizations: the issue's HTML and text go
once, and each recipient gets a substitution for their unsubscribe link, their
own List-Unsubscribe headers and custom_args naming the send and delivery (for
matching webhook events).

SendGrid takes a request whole or not at all, so the batch is the unit of
doubt. What is tried again (the shared RetryPolicy) is only what SendGrid
certainly did not take:
- 429: SendGrid's rate-limit documentation says that past the limit no request
  is served for the rest of the refresh period; we wait for X-RateLimit-Reset,
  and the scheduler's pace drops for a while.
- A connection refused, a name that does not resolve, a certificate refused in
  the handshake: the request never left this machine (urllib reports these as
  URLError while connecting, before a byte of the request is written).
Any other 4xx (400, 401, 403, 413…) is SendGrid validating the request and
refusing it whole: the batch fails with SendGrid's own message, not retried.
Everything that may follow acceptance leaves the batch in doubt (OutcomeUnknown),
never retried without the editor:
- any 5xx: SendGrid documents 5xx as "an error occurred when SendGrid attempted
  to process" a valid request, and a 502/503/504 may come from a gateway in
  front of a server that had already queued the mail;
- a timeout, reset or closed connection once the request was sent, or while it
  was being sent (the whole body may have arrived).
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from http.client import HTTPException
from typing import Any
from urllib.error import URLError

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from ..config import ConfigError, Settings
from ..messages import ONE_CLICK, Issue, Recipient, list_id
from ..personalize import UNSUBSCRIBE_PLACEHOLDER
from . import DeliveryFailed, OutcomeUnknown, Outcomes
from .retry import NotTaken, RetryPolicy

MAX_PERSONALIZATIONS = 1000


def _sendgrid_message(error: HTTPError) -> str:
    try:
        body = json.loads(error.body)
        return "; ".join(e.get("message", "") + (f" ({e['field']})" if e.get("field") else "") for e in body["errors"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return (error.body or b"").decode("utf-8", errors="replace")[:500] if isinstance(error.body, bytes) else str(error.body)[:500]


def _never_sent(exc: URLError) -> bool:
    """True when no byte of the request can have left: refused, no such host, or a certificate refused."""
    return isinstance(exc.reason, (ConnectionRefusedError, socket.gaierror, ssl.SSLCertVerificationError))


def _rate_limit_wait(error: HTTPError) -> float | None:
    """Seconds until X-RateLimit-Reset (a Unix time), or None when SendGrid did not say."""
    reset = error.headers.get("X-RateLimit-Reset") if error.headers else None
    try:
        return max(0.05, float(str(reset)) - time.time())
    except (TypeError, ValueError):
        return None


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

    def payload(self, issue: Issue, recipients: list[Recipient]) -> dict[str, Any]:
        track = issue.send_id is not None
        send_id = str(issue.send_id)
        personalizations = []
        for r in recipients:
            url = r.unsubscribe_url
            entry: dict[str, Any] = {
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
            "headers": {"List-Id": list_id(self.settings)},
            "content": [{"type": "text/plain", "value": issue.text}, {"type": "text/html", "value": issue.html}],
        }

    def policy(self) -> RetryPolicy:
        return RetryPolicy(self.max_attempts, self.backoff_base, self.max_wait)

    def _attempt(self, body: dict[str, Any], outcomes: Outcomes) -> None:
        """One request: returns when SendGrid accepted it, raises NotTaken, DeliveryFailed or OutcomeUnknown."""
        try:
            self.client.client.mail.send.post(request_body=body, timeout=self.timeout)
        except HTTPError as exc:
            if exc.status_code == 429:
                wait = _rate_limit_wait(exc)
                outcomes.slow_down(wait or 0.0)  # no request is served until the reset: not from any worker
                raise NotTaken(f"SendGrid answered 429: {_sendgrid_message(exc)}", wait) from None
            if exc.status_code < 500:
                raise DeliveryFailed(f"SendGrid refused the batch ({exc.status_code}): {_sendgrid_message(exc)}") from None
            raise OutcomeUnknown(f"SendGrid answered {exc.status_code} ({_sendgrid_message(exc)}); "
                                 "it may have taken the batch before the error") from None
        except URLError as exc:
            if _never_sent(exc):
                raise NotTaken(f"cannot reach SendGrid ({exc.reason})") from None
            raise OutcomeUnknown(f"the connection to SendGrid broke while sending ({exc.reason}); it may have taken the batch") from None
        except (TimeoutError, ConnectionError, OSError, HTTPException) as exc:
            raise OutcomeUnknown(f"no answer from SendGrid ({exc or type(exc).__name__}); it may have taken the batch") from None

    def _post(self, body: dict[str, Any], outcomes: Outcomes) -> None:
        self.policy().call(lambda: self._attempt(body, outcomes))

    def send(self, issue: Issue, recipients: list[Recipient], outcomes: Outcomes) -> dict[int, str]:
        # The request is taken whole or not at all: nothing to settle one by one.
        if len(recipients) > MAX_PERSONALIZATIONS:
            raise ValueError(f"a SendGrid batch holds at most {MAX_PERSONALIZATIONS} recipients")
        if not outcomes.may_send(len(recipients)):
            return {}  # stopping: nothing was sent, and the scheduler knows it
        self._post(self.payload(issue, recipients), outcomes)
        return {}
