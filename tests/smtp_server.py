"""A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message it accepts."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import socket
import threading
import time
from typing import Any

from aiosmtpd.controller import Controller


class Recorder:
    """Keeps what it accepts; scripted, it answers some recipients as real servers do.

    - `refuse_rcpt[address]`: the reply to RCPT TO, every time (e.g. "550 5.1.1 no such user");
    - `defer_rcpt[address]`: how many times RCPT TO gets `defer_answer` ("451 4.7.1 try again later") before it is accepted;
    - `refuse_data[address]`: the reply after that recipient's message (e.g. "554 5.7.1 rejected as spam");
    - `drop_data`: addresses whose message is read whole, then the connection is dropped without an answer
      (the message is kept in `dropped`: it may well have been delivered)."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []
        self.sessions: list[tuple[bool, bytes | None]] = []  # (over TLS?, login) per message
        self.dropped: list[str] = []
        self.delay = 0.0
        self.pause = 0.0  # seconds each message waits without blocking the others: a server with latency
        self.arrivals: list[float] = []  # time.monotonic() of every message's DATA
        self.in_data = 0
        self.most_at_once = 0  # the most messages the server was taking at the same moment
        self.lock = threading.Lock()
        self.refuse_rcpt: dict[str, str] = {}
        self.defer_rcpt: dict[str, int] = {}
        self.defer_answer = "451 4.7.1 try again later"
        self.refuse_data: dict[str, str] = {}
        self.drop_data: set[str] = set()
        self.rcpt_answers: list[tuple[str, str]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.lock:
            if address in self.refuse_rcpt:
                answer = self.refuse_rcpt[address]
            elif self.defer_rcpt.get(address, 0) > 0:
                self.defer_rcpt[address] -= 1
                answer = self.defer_answer
            else:
                envelope.rcpt_tos.append(address)
                answer = "250 OK"
            self.rcpt_answers.append((address, answer))
        return answer

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.arrivals.append(time.monotonic())
            self.in_data += 1
            self.most_at_once = max(self.most_at_once, self.in_data)
        try:
            if self.pause:
                await asyncio.sleep(self.pause)
            return self._take(server, session, envelope)
        finally:
            with self.lock:
                self.in_data -= 1

    def _take(self, server, session, envelope):
        if self.delay:
            time.sleep(self.delay)  # block the loop on purpose: a slow server
        for address in envelope.rcpt_tos:
            if address in self.refuse_data:
                return self.refuse_data[address]
            if address in self.drop_data:
                with self.lock:
                    self.dropped.append(address)
                server.transport.close()
                return "250 OK"  # never reaches the client: the connection is gone
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

    def __init__(self, tls_context=None, login: tuple[str, str] | None = None, smtputf8: bool = False) -> None:
        from aiosmtpd.smtp import AuthResult

        self.recorder = Recorder()
        self.port = free_port()
        extra: dict[str, Any] = {}
        if tls_context is not None:
            extra.update(tls_context=tls_context, require_starttls=True)
        if login is not None:
            def authenticate(server, session, envelope, mechanism, auth_data):
                given = (auth_data.login.decode(), auth_data.password.decode())
                return AuthResult(success=given == login, auth_data=auth_data)

            extra.update(authenticator=authenticate, auth_required=True)
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port, enable_SMTPUTF8=smtputf8, **extra)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


class ScriptedSmtp:
    """A bare SMTP server on 127.0.0.1 that answers as told, for what a real one will not do on
    cue: `answers[command]` is a list of replies to give to that command (MAIL, RCPT, DATA for the
    reply after the message, "DATA command" for the DATA command itself, RSET, AUTH), one per time
    it is asked, then "250 OK" (354 for DATA); a reply of
    "close" drops the connection instead. EHLO offers `extensions`. `connections` counts them, `ended`
    those the client has closed (one at a time: a client that never closes holds up the next)."""

    def __init__(self, answers: dict[str, list[str]] | None = None, extensions: tuple[str, ...] = ("8BITMIME",)) -> None:
        self.answers = {command: list(replies) for command, replies in (answers or {}).items()}
        self.extensions = extensions
        self.connections = 0
        self.ended = 0  # sessions over: the client said QUIT or closed the connection
        self.delivered = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> ScriptedSmtp:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.listener.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn, conn.makefile("rb") as reader, contextlib.suppress(OSError):  # a client that went away
                self._session(conn, reader)
            self.ended += 1

    def _reply(self, command: str) -> str:
        replies = self.answers.get(command)
        return replies.pop(0) if replies else "250 OK"

    def _session(self, conn: socket.socket, reader: Any) -> None:
        conn.sendall(b"220 scripted ready\r\n")
        for raw in reader:
            command = raw.decode("ascii", "replace").split(" ", 1)[0].strip().upper()
            if command == "EHLO":
                lines = ["localhost", *self.extensions]
                answer = "\r\n".join(f"250{'-' if n < len(lines) - 1 else ' '}{line}" for n, line in enumerate(lines))
            elif command == "DATA" and self.answers.get("DATA command"):
                answer = self._reply("DATA command")  # refused before the message
            elif command == "DATA":
                conn.sendall(b"354 go ahead\r\n")
                for line in reader:
                    if line == b".\r\n":
                        break
                answer = self._reply("DATA")
                self.delivered += answer.startswith("250")
            elif command == "QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                answer = self._reply(command)
            if answer == "close":
                return
            conn.sendall(answer.encode() + b"\r\n")
