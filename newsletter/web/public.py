"""The public app an editor deploys: the web archive and feed from the build,
the signup form with double opt-in (web/subscribe.py), unsubscribe links (GET
shows a button, POST unsubscribes, RFC 8058 one-click) and SendGrid's signed
Event Webhook. Every response carries the security headers (web/hardening.py);
database work runs in threads, never in the event loop."""

from __future__ import annotations

import logging
import re

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route

from .. import webhooks
from ..config import Settings
from ..render import template_environment
from ..store import Store
from ..store import subscribers as ops
from ..store.schema import SUPPRESSED
from ..tokens import TEST_COPY_SUBSCRIBER, BadToken, Signer, fallback_secrets
from .hardening import BodyLimit, HardenedStarlette, security_headers
from .subscribe import signup_routes
from .published import PublishedFiles

log = logging.getLogger("newsletter.web")
_TOKEN = re.compile(r"(token=)[^&\s]+")


class RedactTokens(logging.Filter):
    """Keeps unsubscribe tokens out of access logs: a logged token is a working link."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_TOKEN.sub(r"\1[redacted]", a) if isinstance(a, str) else a for a in record.args)
        record.msg = _TOKEN.sub(r"\1[redacted]", str(record.msg))
        return True


def create_app(settings: Settings, store: Store, secret: str) -> Starlette:
    site = _PublicSite(settings, store, secret)
    settings.output_path.mkdir(parents=True, exist_ok=True)
    return HardenedStarlette(
        security=security_headers(settings.base_url),
        routes=[
            *signup_routes(settings, store, secret, site.notice, site.render),
            Route("/unsubscribe", site.unsubscribe_form, methods=["GET"]),
            Route("/unsubscribe", site.unsubscribe, methods=["POST"]),
            Route("/webhooks/sendgrid", site.sendgrid_events, methods=["POST"]),
            Mount("/", PublishedFiles(settings.output_path))  # only what the build published,
        ],
        middleware=[Middleware(BodyLimit, limit=settings.max_request_bytes,
                               too_large=lambda: site.notice(413, "Too much", "That request was larger than this site accepts."))],
        exception_handlers={404: site.error_page, 413: site.error_page, 500: site.error_page},
    )


class _PublicSite:
    """The pages and endpoints of the public app, beside the files the build published."""

    def __init__(self, settings: Settings, store: Store, secret: str):
        self.settings = settings
        self.store = store
        self.signer = Signer(secret, fallback_secrets(settings))
        self.env = template_environment(settings)

    def page(self, status: int, heading: str, message: str, form_action: str | None = None) -> HTMLResponse:
        html = self.env.get_template("unsubscribe.html.j2").render(heading=heading, message=message, form_action=form_action)
        return HTMLResponse(html, status_code=status)

    def render(self, template: str, **values: object) -> str:
        return self.env.get_template(template).render(**values)

    def notice(self, status: int, heading: str, message: str, form_action: str | None = None, button: str = "") -> HTMLResponse:
        return HTMLResponse(self.render("notice.html.j2", heading=heading, message=message, form_action=form_action,
                                        button=button), status_code=status)

    def error_page(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        heading, message = {
            404: ("Page not found", "There is no page at this address. Every issue is in the archive."),
            413: ("Too much", "That request was larger than this site accepts."),
        }.get(status, ("Something went wrong", "This page failed on our side. Please try again later."))
        # The message is fixed text: nothing from the request is echoed back.
        return self.notice(status, heading, message)

    def subscriber_for(self, request: Request) -> ops.Subscriber | None:
        """The subscriber a valid token names, or None (logged without the token). Blocks: call in a thread."""
        try:
            token = self.signer.verify(request.query_params.get("token", ""))
        except BadToken:
            log.warning("unsubscribe refused from %s: the token is forged or damaged", request.client.host if request.client else "?")
            return None
        with self.store.read() as conn:
            subscriber = ops.get(conn, token.subscriber_id)
        if subscriber is None:
            log.warning("unsubscribe refused: the token names no subscriber on this list")
        return subscriber

    def test_copy_page(self, request: Request) -> HTMLResponse | None:
        """The page for a test copy's link (`newsletter test`), which names no subscriber; else None."""
        try:
            token = self.signer.verify(request.query_params.get("token", ""))
        except BadToken:
            return None
        if token.subscriber_id != TEST_COPY_SUBSCRIBER:
            return None
        return self.page(200, "This was a test copy",
                         f"This link came from a test copy of {self.settings.site_name} sent with `newsletter test`, so it "
                         "unsubscribes nobody. In the issue your readers get, the same link unsubscribes the reader "
                         "it was sent to, with one click.")

    def bad_link(self) -> HTMLResponse:
        return self.page(400, "This link does not work",
                         "The unsubscribe link is incomplete or not one of ours. Please use the link from the newsletter "
                         "email itself, or reply to that email and we will take you off the list by hand.")

    async def unsubscribe_form(self, request: Request) -> Response:
        # Changes nothing: mail scanners open links to check them.
        if test_copy := self.test_copy_page(request):
            return test_copy
        subscriber = await run_in_threadpool(self.subscriber_for, request)
        if subscriber is None:
            return self.bad_link()
        site_name = self.settings.site_name
        if subscriber.status in SUPPRESSED:
            return self.page(200, "You are unsubscribed", f"{subscriber.email} will get no more issues of {site_name}.")
        return self.page(200, f"Unsubscribe from {site_name}?",
                         f"Press the button and {subscriber.email} will get no more issues.",
                         form_action="?" + request.url.query)

    async def unsubscribe(self, request: Request) -> Response:
        if test_copy := self.test_copy_page(request):
            return test_copy
        subscriber = await run_in_threadpool(self.subscriber_for, request)
        if subscriber is None:
            return self.bad_link()
        one_click = (await request.body()).strip() == b"List-Unsubscribe=One-Click"

        # The history says which email the link came from: the token's issue is signed, so it is ours.
        issue = self.signer.verify(request.query_params.get("token", "")).issue

        def unsubscribe_now() -> None:
            # Active or pending (a confirmation email's "not you?" link): suppressed from now on.
            with self.store.begin() as conn:
                if subscriber.status not in SUPPRESSED:
                    ops.set_status(conn, subscriber.id, "unsubscribed",
                                   f"{'one-click unsubscribe (RFC 8058)' if one_click else 'unsubscribe link'} in {issue}")

        await run_in_threadpool(unsubscribe_now)
        return self.page(200, "You are unsubscribed",
                         f"{subscriber.email} will get no more issues of {self.settings.site_name}. Sorry to see you go.")

    async def sendgrid_events(self, request: Request) -> Response:
        body = await request.body()
        try:
            webhooks.verify(self.settings.sendgrid_webhook_public_key, body,
                            request.headers.get(webhooks.SIGNATURE_HEADER), request.headers.get(webhooks.TIMESTAMP_HEADER))
        except webhooks.Refused as exc:
            log.warning("SendGrid webhook refused: %s", exc)
            return JSONResponse({"error": "forbidden"}, status_code=403)
        try:
            events = webhooks.parse(body)
        except webhooks.Malformed as exc:
            log.warning("SendGrid webhook refused: %s", exc)
            return JSONResponse({"error": str(exc)}, status_code=400)
        applied = await run_in_threadpool(webhooks.apply, self.store, events)
        return JSONResponse({"events": applied.events, "changed": applied.changed, "replayed": applied.replayed,
                             "ignored": applied.ignored, "invalid": applied.invalid})
