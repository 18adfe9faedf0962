"""What the public app does for every response, whatever route or error made it:
security headers, a limit on request bodies, and pages for its errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def origin_of(url: str) -> str:
    """scheme://host[:port] of a URL, as browsers send it in Origin."""
    parts = urlsplit(url.strip())
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else ""


def security_headers(base_url: str) -> list[tuple[bytes, bytes]]:
    """The headers every response carries. Pages are ours alone: scripts and styles from
    here (styles inline too, as the templates keep them), images from anywhere an essay
    links, forms only to here, and never inside another site's frame."""
    form_targets = " ".join(target for target in dict.fromkeys(["'self'", origin_of(base_url)]) if target)
    policy = (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' https: data:; "
        f"form-action {form_targets}; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    )
    return [
        (b"content-security-policy", policy.encode("latin-1")),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"strict-origin-when-cross-origin"),
        (b"x-frame-options", b"DENY"),  # frame-ancestors for browsers that predate it
    ]


class SecurityHeaders:
    """Adds the headers to every response start: outermost, so error pages get them too."""

    def __init__(self, app: ASGIApp, headers: list[tuple[bytes, bytes]]):
        self.app = app
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in self.headers if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """Refuses a request body over `limit` bytes with 413: at once when Content-Length says
    so, else as soon as the streamed body passes it, before a handler holds it all in memory."""

    def __init__(self, app: ASGIApp, limit: int, too_large: Callable[[], Response]):
        self.app = app
        self.limit = limit
        self.too_large = too_large

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self.too_large()(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413)
            return message

        await self.app(scope, counted, send)


class HardenedStarlette(Starlette):
    """Starlette with SecurityHeaders outside its error handling, so a 500 carries them too."""

    def __init__(self, *, security: list[tuple[bytes, bytes]], **kwargs: Any) -> None:
        self.security = security  # security_headers(base_url)
        super().__init__(**kwargs)

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeaders(super().build_middleware_stack(), self.security)
