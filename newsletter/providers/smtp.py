"""SMTP: NEWSLETTER_SMTP_URL, e.g. smtp://user:pass@host:587 (STARTTLS when the server
offers it) or smtps://user:pass@host:465 (TLS from the start)."""

from __future__ import annotations

import random
import smtplib
import ssl
import time
from urllib.parse import unquote, urlsplit

from ..config import ConfigError, Settings
from ..messages import Issue, Recipient, personal_copy
from . import DeliveryFailed, OutcomeUnknown


class SmtpProvider:
    name = "smtp"
    connect_attempts = 4
    backoff_base = 0.5  # seconds; doubled on each attempt, with jitter
    timeout = 60.0

    def __init__(self, settings: Settings):
        self.settings = settings
        url = urlsplit(settings.smtp_url)
        if url.scheme not in ("smtp", "smtps") or not url.hostname:
            raise ConfigError(
                f"NEWSLETTER_SMTP_URL must look like smtp://user:password@host:587, not {url.scheme}://…"
            )
        self.implicit_tls = url.scheme == "smtps"
        self.host = url.hostname
        self.port = url.port or (465 if self.implicit_tls else 587)
        self.username = unquote(url.username) if url.username else None
        self.password = unquote(url.password) if url.password else None

    def _connect(self) -> smtplib.SMTP:
        """A logged-in connection; DeliveryFailed if none could be had (nothing was sent)."""
        last: Exception | None = None
        for attempt in range(self.connect_attempts):
            try:
                if self.implicit_tls:
                    server: smtplib.SMTP = smtplib.SMTP_SSL(
                        self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
                    )
                else:
                    server = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
                    server.ehlo()
                    if server.has_extn("starttls"):
                        server.starttls(context=ssl.create_default_context())
                        server.ehlo()
                if self.username:
                    server.login(self.username, self.password or "")
                return server
            except smtplib.SMTPAuthenticationError as exc:
                raise DeliveryFailed(f"the SMTP server refused the login ({exc.smtp_code})", retryable=False) from None
            except (OSError, smtplib.SMTPException) as exc:
                last = exc
                time.sleep(self.backoff_base * 2**attempt * random.uniform(0.5, 1.5))
        raise DeliveryFailed(f"cannot reach the SMTP server {self.host}:{self.port} ({last})", retryable=True)

    def send(self, issue: Issue, recipients: list[Recipient]) -> dict[int, str]:
        refused: dict[int, str] = {}
        server = self._connect()
        sent = 0
        try:
            for recipient in recipients:
                data = personal_copy(self.settings, issue, recipient)
                try:
                    server.sendmail(self.settings.sender_address, [recipient.email], data)
                except smtplib.SMTPRecipientsRefused as exc:
                    code, reason = next(iter(exc.recipients.values()))
                    refused[recipient.delivery_id or 0] = f"{code} {reason.decode(errors='replace')}"
                except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
                    if sent == 0 and not refused:
                        raise DeliveryFailed(f"the SMTP server refused the message ({exc.smtp_code})") from None
                    raise OutcomeUnknown(f"the SMTP server refused a message after {sent} were sent: {exc}") from None
                else:
                    sent += 1
        except (OSError, smtplib.SMTPException) as exc:
            # The connection broke mid-message: that message, at least, may have gone.
            raise OutcomeUnknown(f"the SMTP connection broke after {sent} of {len(recipients)} messages: {exc}") from None
        finally:
            try:
                server.quit()
            except (OSError, smtplib.SMTPException):
                server.close()
        return refused
