"""The signup routes of the public app: thin over signup.py, which holds the rules.

GET /subscribe shows the form; POST /subscribe (a form or JSON) always answers
the same "check your inbox"; GET /confirm shows one button and changes
nothing; POST /confirm subscribes. Every database or provider call runs in a
thread, never inside the event loop.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ..config import Settings
from ..signup import FormExpired, FormProblem, LinkProblem, Post, Signups
from ..store import Store
from .hardening import origin_of

log = logging.getLogger("newsletter.web")

Page = Callable[..., HTMLResponse]  # page(status, heading, message, form_action=None, button="")

CHECK_INBOX = ("Check your inbox",
               "We have sent an email to the address you gave. Open it and follow it to finish; "
               "if it is not there in a few minutes, look in your spam folder.")
SCRIPT = ('(function(){var t=%s;document.querySelectorAll("form[data-newsletter-subscribe] input[name=started]")'
          '.forEach(function(i){if(!i.value)i.value=t;});})();\n')


def signup_routes(settings: Settings, store: Store, secret: str, page: Page, render: Callable[..., str]) -> list[Route]:
    service = Signups(settings, store, secret)
    other_sites = {origin_of(o) for o in settings.signup_origins.split(",") if origin_of(o)}
    own = origin_of(settings.base_url)

    def client_ip(request: Request) -> str:
        return request.client.host if request.client else ""

    def foreign_origin(request: Request) -> str | None:
        """The Origin of a cross-site post, "" for one from here (or from no browser)."""
        origin = (request.headers.get("origin") or "").lower()
        if not origin or origin in (own, f"{request.url.scheme}://{request.headers.get('host', '')}".lower()):
            return ""
        return origin

    def cors(request: Request, response: Response) -> Response:
        origin = foreign_origin(request)
        if origin and origin in other_sites:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response

    def form_page(status: int, problem: str = "", email: str = "", name: str = "") -> HTMLResponse:
        html = render("subscribe.html.j2", problem=problem, email=email, name=name, started=service.form_token(),
                      subscribe_url="/subscribe", form_place="subscribe page")
        return HTMLResponse(html, status_code=status)

    async def show_form(request: Request) -> Response:
        if "application/json" in request.headers.get("accept", ""):
            # For a script on another site that posts JSON: the start time its form needs.
            return cors(request, JSONResponse({"started": service.form_token()}, headers={"Cache-Control": "no-store"}))
        return form_page(200)

    async def script(request: Request) -> Response:
        # Fills in the start time on static pages (archive, issues, other sites), fresh each time.
        return Response(SCRIPT % json.dumps(service.form_token()), media_type="text/javascript",
                        headers={"Cache-Control": "no-store"})

    async def preflight(request: Request) -> Response:
        origin = foreign_origin(request)
        if origin not in other_sites:
            return Response(status_code=403)
        return Response(status_code=204, headers={
            "Access-Control-Allow-Origin": origin, "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": "Content-Type", "Access-Control-Max-Age": "600", "Vary": "Origin"})

    async def subscribe(request: Request) -> Response:
        wants_json = request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"
        origin = foreign_origin(request)
        if origin and origin not in other_sites:
            log.warning("signup refused: a post from another site not in signup_origins (%s)", origin[:100])
            if wants_json:
                return JSONResponse({"ok": False, "error": "posts from this site are not accepted"}, status_code=403)
            return page(403, "Not accepted here", "This form cannot be posted from that site. Please subscribe "
                        "on the newsletter's own page.")
        fields = await _fields(request, wants_json)
        if fields is None:
            return cors(request, JSONResponse({"ok": False, "error": "send a JSON object of strings"}, status_code=400))
        where = fields.get("form", "")[:100] or "subscribe page"
        post = Post(email=fields.get("email", ""), name=fields.get("name", ""), started=fields.get("started", ""),
                    honeypot=fields.get("website", ""), form=f"{where} at {origin}" if origin else where,
                    ip=client_ip(request))
        try:
            await run_in_threadpool(service.request, post)
        except FormExpired as exc:
            if wants_json:
                return cors(request, JSONResponse({"ok": False, "error": str(exc), "started": service.form_token()},
                                                  status_code=400))
            return form_page(200, str(exc), post.email, post.name)
        except FormProblem as exc:
            if wants_json:
                return cors(request, JSONResponse({"ok": False, "error": str(exc)}, status_code=400))
            return form_page(400, str(exc), post.email, post.name)
        # The same answer for a new, active, suppressed or refused address (see signup.py).
        if wants_json:
            return cors(request, JSONResponse({"ok": True, "message": " ".join(CHECK_INBOX)}))
        return page(200, *CHECK_INBOX)

    def bad_link(problem: LinkProblem) -> HTMLResponse:
        log.warning("confirmation link refused: %s", problem.reason)
        return page(400, "This link does not work", str(problem))

    def subscribed(email: str) -> HTMLResponse:
        return page(200, "Thank you: you are subscribed",
                    f"{email} will receive every new issue of {settings.site_name}. A welcome email is on its way.")

    async def confirm_form(request: Request) -> Response:
        # Changes nothing: mail scanners open links to check them.
        try:
            found = await run_in_threadpool(service.check, request.query_params.get("token", ""))
        except LinkProblem as problem:
            return bad_link(problem)
        if found.confirmed:
            return subscribed(found.email)
        return page(200, f"Subscribe to {settings.site_name}?",
                    f"Press the button and {found.email} will receive every new issue.",
                    form_action="?" + request.url.query, button="Yes, subscribe me")

    async def confirm(request: Request) -> Response:
        try:
            done = await run_in_threadpool(service.confirm, request.query_params.get("token", ""), client_ip(request))
        except LinkProblem as problem:
            return bad_link(problem)
        return subscribed(done.email)

    return [
        Route("/subscribe", show_form, methods=["GET"]),
        Route("/subscribe", subscribe, methods=["POST"]),
        Route("/subscribe", preflight, methods=["OPTIONS"]),
        Route("/subscribe.js", script, methods=["GET"]),
        Route("/confirm", confirm_form, methods=["GET"]),
        Route("/confirm", confirm, methods=["POST"]),
    ]


async def _fields(request: Request, wants_json: bool) -> dict[str, str] | None:
    """The posted fields as strings; None for JSON that is not an object."""
    if wants_json:
        try:
            data = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(data, dict):
            return None
        return {str(k): v for k, v in data.items() if isinstance(v, str)}
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}
