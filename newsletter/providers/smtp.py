"""SMTP: NEWSLETTER_SMTP_URL, e.g. smtp://user:pass@host:587 (STARTTLS when the server
offers it) or smtps://user:pass@host:465 (TLS from the start).

One message per recipient over one connection, each settled before the next
goes on the wire (see providers/__init__.py), from the server's own answers:
- 250 after the message: sent.
- 5xx at MAIL, RCPT or DATA: failed, that recipient alone, with the answer.
- 4xx at MAIL, RCPT or DATA, or a connection lost before DATA began: deferred;
  a 421, or a 4xx that speaks of rate, also slows the scheduler's pace for a while.
- The connection lost after the message began: in doubt, that message alone;
  the batch goes on over a new connection.
An address or message that cannot be written fails that recipient alone: a
non-ASCII part before the @ goes out only where the server offers SMTPUTF8.
"""

from __future__ import annotations

import contextlib
import random
import re
import smtplib
import ssl
import time
from urllib.parse import unquote, urlsplit

from ..addressing import UnsendableAddress, needs_smtputf8, wire_address
from ..config import ConfigError, Settings
from ..messages import Issue, Recipient, personal_copy
from ..store.schema import DeliveryStatus
from . import BeforeTheWire, DeliveryFailed, Outcomes

_LINE_START_DOT = re.compile(rb"(?m)^\.")
# A server sending us away (421), or refusing for now with words of rate ("too many", "slow down",
# "rate limit"…), asks us to slow down: the scheduler's pace drops for a while. A bare 451
# ("try again later": greylisting, a full queue) defers that recipient and nothing more.
_SLOW_WORDS = re.compile(r"rate|too (many|fast|much)|slow|throttl|limit|exceed", re.IGNORECASE)


class _Refused(Exception):
    """The server answered a command with a refusal (4xx or 5xx)."""

    def __init__(self, stage: str, code: int, text: bytes | str):
        answer = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
        super().__init__(f"{stage}: {code} {' '.join(answer.split())}".strip())
        self.code = code

    @property
    def status(self) -> DeliveryStatus:
        return DeliveryStatus.FAILED if 500 <= self.code <= 599 else DeliveryStatus.DEFERRED


def _asks_to_slow_down(refusal: _Refused) -> bool:
    return refusal.code == 421 or (400 <= refusal.code < 500 and bool(_SLOW_WORDS.search(str(refusal))))


def _parse(url_text: str) -> tuple[bool, str, int, str | None, str | None]:
    try:
        url = urlsplit(url_text)
    except ValueError:  # an unclosed [ of an IPv6 address, and the like
        raise ConfigError("NEWSLETTER_SMTP_URL is not a URL; write it as smtp://user:password@host:587") from None
    if url.scheme not in ("smtp", "smtps") or not url.hostname:
        raise ConfigError(f"NEWSLETTER_SMTP_URL must look like smtp://user:password@host:587, not {url.scheme}://…")
    implicit_tls = url.scheme == "smtps"
    try:
        port = url.port or (465 if implicit_tls else 587)
    except ValueError:
        raise ConfigError("NEWSLETTER_SMTP_URL has a port that is not a number from 1 to 65535; "
                          "write it as smtp://user:password@host:587") from None
    user = unquote(url.username) if url.username else None
    password = unquote(url.password) if url.password else None
    return implicit_tls, url.hostname, port, user, password


class SmtpProvider:
    name = "smtp"
    connect_attempts = 4
    backoff_base = 0.5  # seconds; doubled on each attempt, with jitter
    timeout = 60.0

    def __init__(self, settings: Settings):
        self.settings = settings
        self.implicit_tls, self.host, self.port, self.username, self.password = _parse(settings.smtp_url)

    def _connect(self) -> smtplib.SMTP:
        """A logged-in connection; DeliveryFailed if none could be had (nothing was sent).
        A connection that fails on the way (TLS, a refused login) is closed, never left open."""
        last: Exception | None = None
        for attempt in range(self.connect_attempts):
            server: smtplib.SMTP | None = None
            try:
                if self.implicit_tls:
                    server = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=ssl.create_default_context())
                else:
                    server = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
                server.ehlo()
                if not self.implicit_tls and server.has_extn("starttls"):
                    server.starttls(context=ssl.create_default_context())
                    server.ehlo()
                if self.username:
                    server.login(self.username, self.password or "")
                return server
            except smtplib.SMTPAuthenticationError as exc:
                _close(server, polite=True)
                raise DeliveryFailed(f"the SMTP server refused the login ({exc.smtp_code})", retryable=False) from None
            except (OSError, smtplib.SMTPException) as exc:
                _close(server)
                last = exc
                if attempt + 1 < self.connect_attempts:
                    time.sleep(self.backoff_base * 2**attempt * random.uniform(0.5, 1.5))
        raise DeliveryFailed(f"cannot reach the SMTP server {self.host}:{self.port} ({last})", retryable=True)

    def message_bytes(self, issue: Issue, recipient: Recipient, utf8: bool) -> bytes:
        return personal_copy(self.settings, issue, recipient, utf8)

    def _transfer(self, server: smtplib.SMTP, address: str, data: bytes, utf8: bool, on_wire: list[bool]) -> None:
        """One message through MAIL, RCPT and DATA; _Refused for a refusal. `on_wire[0]` is set once it may be accepted."""
        code, text = server.mail(self.settings.sender_address, ["SMTPUTF8", "BODY=8BITMIME"] if utf8 else [])
        if code != 250:
            raise _Refused("MAIL FROM refused", code, text)
        code, text = server.rcpt(address)
        if code not in (250, 251):
            raise _Refused("RCPT TO refused", code, text)
        code, text = server.docmd("DATA")
        if code != 354:
            raise _Refused("DATA refused", code, text)
        on_wire[0] = True
        body = _LINE_START_DOT.sub(b"..", data)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        server.send(body + b".\r\n")
        code, text = server.getreply()
        if code != 250:
            raise _Refused("message refused", code, text)

    def _prepare(self, issue: Issue, recipient: Recipient, outcomes: Outcomes) -> tuple[str, bool, bytes] | None:
        """The wire address, whether it needs SMTPUTF8, and the message; None (that recipient failed) if one cannot be made."""
        try:
            address = wire_address(recipient.email)
            utf8 = needs_smtputf8(address)
            return address, utf8, self.message_bytes(issue, recipient, utf8)
        except UnsendableAddress as exc:
            outcomes.settle(recipient, DeliveryStatus.FAILED, f"cannot send to this address: {exc}")
        except Exception as exc:  # noqa: BLE001 - one recipient's message must not stop the others
            outcomes.settle(recipient, DeliveryStatus.FAILED, f"the message could not be built: {type(exc).__name__}: {exc}")
        return None

    def _deliver(self, server: smtplib.SMTP, recipient: Recipient, message: tuple[str, bool, bytes],
                 outcomes: Outcomes) -> smtplib.SMTP | None:
        """One message over `server`, its outcome settled; returns the connection for the next (None: open a new one)."""
        address, utf8, data = message
        if utf8 and not server.has_extn("smtputf8"):
            outcomes.settle(recipient, DeliveryStatus.FAILED, "the address has non-ASCII characters before the @ "
                            "and the SMTP server does not offer SMTPUTF8")
            return server
        on_wire = [False]
        try:
            self._transfer(server, address, data, utf8, on_wire)
        except _Refused as exc:
            outcomes.settle(recipient, exc.status, str(exc))
            if _asks_to_slow_down(exc):
                outcomes.slow_down()
            if exc.code == 421:
                _close(server)  # the server is closing this connection
                return None
            return server if on_wire[0] else _reset(server)
        except (OSError, smtplib.SMTPException) as exc:
            _close(server)
            if on_wire[0]:
                outcomes.settle(recipient, DeliveryStatus.IN_DOUBT,
                                f"the connection broke while the message was with the server ({exc}); it may have been delivered")
            else:
                outcomes.settle(recipient, DeliveryStatus.DEFERRED, f"the connection broke before the message was sent ({exc})")
            return None
        except Exception as exc:
            if on_wire[0]:
                raise  # the message may have been accepted: in doubt, as any unexpected error
            _close(server)
            raise BeforeTheWire(f"{type(exc).__name__}: {exc}") from exc
        outcomes.settle(recipient, DeliveryStatus.SENT)
        return server

    def send(self, issue: Issue, recipients: list[Recipient], outcomes: Outcomes) -> dict[int, str]:
        server: smtplib.SMTP | None = None
        try:
            for recipient in recipients:
                if not outcomes.may_send():
                    return {}
                message = self._prepare(issue, recipient, outcomes)
                if message is None:
                    continue
                if server is None:
                    server = self._connect()  # DeliveryFailed: the rest are deferred (or failed, for a refused login)
                server = self._deliver(server, recipient, message, outcomes)
        finally:
            if server is not None:
                _close(server, polite=True)
        return {}


def _reset(server: smtplib.SMTP) -> smtplib.SMTP | None:
    """The connection ready for the next message after a refusal, or None if it broke."""
    try:
        server.rset()
        return server
    except (OSError, smtplib.SMTPException):
        _close(server)
        return None


def _close(server: smtplib.SMTP | None, polite: bool = False) -> None:
    """Close the connection (after QUIT when `polite`); returns None, the connection there is now."""
    if server is None:
        return None
    try:
        if polite:
            server.quit()
            return None
    except (OSError, smtplib.SMTPException):
        pass
    with contextlib.suppress(OSError):
        server.close()
    return None
