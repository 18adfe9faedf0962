"""A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message it accepts."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
import time

from aiosmtpd.controller import Controller


class Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []
        self.sessions: list[tuple[bool, bytes | None]] = []  # (over TLS?, login) per message
        self.delay = 0.0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201, N802
        if self.delay:
            time.sleep(self.delay)  # block the loop on purpose: a slow server
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), message))
            login = getattr(session.auth_data, "login", None) if session.authenticated else None
            self.sessions.append((session.ssl is not None, login))
        return "250 OK"

    def recipients(self) -> list[str]:
        with self.lock:
            return [r for rcpts, _ in self.messages for r in rcpts]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpServer:
    """Plain by default; with `tls_context` and `login` it insists on STARTTLS, then AUTH."""

    def __init__(self, tls_context=None, login: tuple[str, str] | None = None) -> None:  # noqa: ANN001
        from aiosmtpd.smtp import AuthResult

        self.recorder = Recorder()
        self.port = free_port()
        extra = {}
        if tls_context is not None:
            extra.update(tls_context=tls_context, require_starttls=True)
        if login is not None:
            def authenticate(server, session, envelope, mechanism, auth_data):  # noqa: ANN001, ANN202
                given = (auth_data.login.decode(), auth_data.password.decode())
                return AuthResult(success=given == login, auth_data=auth_data)

            extra.update(authenticator=authenticate, auth_required=True)
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port, **extra)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
