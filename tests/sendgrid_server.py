"""A SendGrid-compatible /v3/mail/send on 127.0.0.1, for the real `sendgrid` client.

It checks the API key, validates each body against SendGrid's own API
description (../shared/reference) when that file is there, keeps what it
accepted, and can be told to answer 429 or 500 for a while, or 400; or to take
a request and then answer 5xx, drop the connection or stall (`accept_then`).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REFERENCE = Path(__file__).resolve().parent.parent.parent / "shared" / "reference" / "sendgrid-mail-send-openapi.json"
API_KEY = "SG.test-key-not-a-real-one"
MESSAGES = {429: "too many requests", 500: "internal error", 400: "The from address does not match a verified Sender Identity.",
            502: "bad gateway", 503: "service unavailable", 504: "gateway timeout"}


def mail_send_validator():
    """A jsonschema validator for the Mail Send body, or None when the reference is absent."""
    if not REFERENCE.is_file():
        return None
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    document = json.loads(REFERENCE.read_text(encoding="utf-8"))
    registry = Registry().with_resource("urn:sendgrid", Resource.from_contents(document, default_specification=DRAFT202012))
    pointer = "urn:sendgrid#/components/requestBodies/PostMailSend/content/application~1json/schema"
    return Draft202012Validator({"$ref": pointer}, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER)


@dataclass
class Accepted:
    email: str
    substitutions: dict
    headers: dict
    custom_args: dict
    body: dict = field(repr=False)


Answer = tuple[int, dict | None, dict | None]  # status, JSON body, headers


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer

    def log_message(self, *args):
        pass

    def answer(self, status: int, body: dict | None = None, headers: dict | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        sendgrid = self.server.sendgrid
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        refused = sendgrid.refusal(self.path, self.headers.get("Authorization"), raw)
        if refused is not None:
            return self.answer(*refused)
        after = sendgrid.take(json.loads(raw))
        if after == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return None
        if after == "stall":
            time.sleep(sendgrid.stall)
            return self.answer(202)
        if isinstance(after, int):
            return self.answer(after, {"errors": [{"message": MESSAGES[after]}]})
        return self.answer(202)


class _HTTPServer(ThreadingHTTPServer):
    sendgrid: SendGridServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client went away (a timeout, a test's own drop): its test says what it saw
        super().handle_error(request, client_address)


class SendGridServer:
    def __init__(self, port: int = 0) -> None:
        self.validator = mail_send_validator()
        self.accepted: list[Accepted] = []
        self.requests = 0
        self.request_sizes: list[int] = []
        self.invalid: list[str] = []
        self.script: list[tuple[int, dict]] = []  # answers to give before accepting again
        self.after: list[int | str] = []  # what to do once the next requests were taken: a status, "drop" or "stall"
        self.stall = 5.0  # seconds a "stall" keeps the client waiting
        self.arrivals: list[float] = []  # time.time() of every request, answered or not
        self.delay = 0.0
        self.lock = threading.Lock()
        self.delivered_count = 0
        self.httpd = _HTTPServer(("127.0.0.1", port), _Handler)
        self.httpd.sendgrid = self
        self.httpd.daemon_threads = True
        self.host = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def refusal(self, path: str, authorization: str | None, raw: bytes) -> Answer | None:
        """The answer to a request SendGrid would not take (or a scripted failure), else None."""
        with self.lock:
            self.requests += 1
            self.arrivals.append(time.time())
        if path != "/v3/mail/send":
            return 404, {"errors": [{"message": "not found"}]}, None
        if authorization != f"Bearer {API_KEY}":
            return 401, {"errors": [{"message": "The provided authorization grant is invalid, expired, or revoked"}]}, None
        with self.lock:
            scripted = self.script.pop(0) if self.script else None
        if scripted:
            status, headers = scripted
            return status, {"errors": [{"message": MESSAGES[status], "field": "from" if status == 400 else None}]}, headers
        return self.invalid_body(json.loads(raw))

    def invalid_body(self, body: dict) -> Answer | None:
        if self.validator is not None:
            errors = sorted(self.validator.iter_errors(body), key=str)
            if errors:
                self.invalid.append(errors[0].message)
                problems = [{"message": e.message, "field": "/".join(map(str, e.path))} for e in errors[:5]]
                return 400, {"errors": problems}, None
        if not 1 <= len(body.get("personalizations", [])) <= 1000:
            problem = {"message": "The personalizations field must have between 1 and 1000 items.", "field": "personalizations"}
            return 400, {"errors": [problem]}, None
        return None

    def take(self, body: dict) -> int | str | None:
        """Accept a valid request; returns what to do instead of answering 202 (see accept_then), if anything."""
        if self.delay:
            time.sleep(self.delay)
        personalizations = body["personalizations"]
        with self.lock:
            self.request_sizes.append(len(personalizations))
            for p in personalizations:
                self.accepted.append(Accepted(p["to"][0]["email"], p.get("substitutions", {}), p.get("headers", {}),
                                              p.get("custom_args", {}), body))
            return self.after.pop(0) if self.after else None

    def start(self) -> SendGridServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def fail_next(self, count: int, status: int, headers: dict | None = None) -> None:
        with self.lock:
            self.script.extend([(status, headers or {})] * count)

    def accept_then(self, count: int, what: int | str) -> None:
        """Take the next `count` valid requests (they count as accepted), then answer `what`
        instead of 202: a status such as 502, "drop" the connection, or "stall"."""
        with self.lock:
            self.after.extend([what] * count)

    def emails(self) -> list[str]:
        return [a.email for a in self.accepted]
