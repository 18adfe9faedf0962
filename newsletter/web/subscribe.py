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
    pages = _SignupPages(settings, Signups(settings, store, secret), page, render)
    return [
        Route("/subscribe", pages.show_form, methods=["GET"]),
        Route("/subscribe", pages.subscribe, methods=["POST"]),
        Route("/subscribe", pages.preflight, methods=["OPTIONS"]),
        Route("/subscribe.js", pages.script, methods=["GET"]),
        Route("/confirm", pages.confirm_form, methods=["GET"]),
        Route("/confirm", pages.confirm, methods=["POST"]),
    ]


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


class _SignupPages:
    """The endpoints: each turns a request into a call on Signups and its answer into a page or JSON."""

    def __init__(self, settings: Settings, service: Signups, page: Page, render: Callable[..., str]):
        self.settings = settings
        self.service = service
        self.page = page
        self.render = render
        self.other_sites = {origin_of(o) for o in settings.signup_origins.split(",") if origin_of(o)}
        self.own = origin_of(settings.base_url)

    def foreign_origin(self, request: Request) -> str:
        """The Origin of a cross-site post, "" for one from here (or from no browser)."""
        origin = (request.headers.get("origin") or "").lower()
        if not origin or origin in (self.own, f"{request.url.scheme}://{request.headers.get('host', '')}".lower()):
            return ""
        return origin

    def cors(self, request: Request, response: Response) -> Response:
        origin = self.foreign_origin(request)
        if origin and origin in self.other_sites:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response

    def form_page(self, status: int, problem: str = "", email: str = "", name: str = "") -> HTMLResponse:
        html = self.render("subscribe.html.j2", problem=problem, email=email, name=name, started=self.service.form_token(),
                           subscribe_url="/subscribe", form_place="subscribe page")
        return HTMLResponse(html, status_code=status)

    async def show_form(self, request: Request) -> Response:
        if "application/json" in request.headers.get("accept", ""):
            # For a script on another site that posts JSON: the start time its form needs.
            return self.cors(request, JSONResponse({"started": self.service.form_token()}, headers={"Cache-Control": "no-store"}))
        return self.form_page(200)

    async def script(self, request: Request) -> Response:
        # Fills in the start time on static pages (archive, issues, other sites), fresh each time.
        return Response(SCRIPT % json.dumps(self.service.form_token()), media_type="text/javascript",
                        headers={"Cache-Control": "no-store"})

    async def preflight(self, request: Request) -> Response:
        origin = self.foreign_origin(request)
        if origin not in self.other_sites:
            return Response(status_code=403)
        return Response(status_code=204, headers={
            "Access-Control-Allow-Origin": origin, "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": "Content-Type", "Access-Control-Max-Age": "600", "Vary": "Origin"})

    async def subscribe(self, request: Request) -> Response:
        wants_json = request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"
        origin = self.foreign_origin(request)
        if origin and origin not in self.other_sites:
            return self.foreign_post(origin, wants_json)
        fields = await _fields(request, wants_json)
        if fields is None:
            return self.cors(request, JSONResponse({"ok": False, "error": "send a JSON object of strings"}, status_code=400))
        where = fields.get("form", "")[:100] or "subscribe page"
        post = Post(email=fields.get("email", ""), name=fields.get("name", ""), started=fields.get("started", ""),
                    honeypot=fields.get("website", ""), form=f"{where} at {origin}" if origin else where,
                    ip=_client_ip(request))
        try:
            await run_in_threadpool(self.service.request, post)
        except FormProblem as exc:
            return self.form_problem(request, exc, post, wants_json)
        # The same answer for a new, active, suppressed or refused address (see signup.py).
        if wants_json:
            return self.cors(request, JSONResponse({"ok": True, "message": " ".join(CHECK_INBOX)}))
        return self.page(200, *CHECK_INBOX)

    def foreign_post(self, origin: str, wants_json: bool) -> Response:
        log.warning("signup refused: a post from another site not in signup_origins (%s)", origin[:100])
        if wants_json:
            return JSONResponse({"ok": False, "error": "posts from this site are not accepted"}, status_code=403)
        return self.page(403, "Not accepted here", "This form cannot be posted from that site. Please subscribe "
                         "on the newsletter's own page.")

    def form_problem(self, request: Request, problem: FormProblem, post: Post, wants_json: bool) -> Response:
        """The form again with what to fix; an expired form (FormExpired) is no error, only shown afresh."""
        expired = isinstance(problem, FormExpired)
        if wants_json:
            answer: dict[str, object] = {"ok": False, "error": str(problem)}
            if expired:
                answer["started"] = self.service.form_token()
            return self.cors(request, JSONResponse(answer, status_code=400))
        return self.form_page(200 if expired else 400, str(problem), post.email, post.name)

    def bad_link(self, problem: LinkProblem) -> HTMLResponse:
        log.warning("confirmation link refused: %s", problem.reason)
        return self.page(400, "This link does not work", str(problem))

    def subscribed(self, email: str) -> HTMLResponse:
        return self.page(200, "Thank you: you are subscribed",
                         f"{email} will receive every new issue of {self.settings.site_name}. A welcome email is on its way.")

    async def confirm_form(self, request: Request) -> Response:
        # Changes nothing: mail scanners open links to check them.
        try:
            found = await run_in_threadpool(self.service.check, request.query_params.get("token", ""))
        except LinkProblem as problem:
            return self.bad_link(problem)
        if found.confirmed:
            return self.subscribed(found.email)
        return self.page(200, f"Subscribe to {self.settings.site_name}?",
                         f"Press the button and {found.email} will receive every new issue.",
                         form_action="?" + request.url.query, button="Yes, subscribe me")

    async def confirm(self, request: Request) -> Response:
        try:
            done = await run_in_threadpool(self.service.confirm, request.query_params.get("token", ""), _client_ip(request))
        except LinkProblem as problem:
            return self.bad_link(problem)
        return self.subscribed(done.email)


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
