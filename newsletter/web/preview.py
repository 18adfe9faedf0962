"""The editor's preview: every issue, drafts too, at desktop and phone width, in
light and dark, its text part and its web page, rebuilt and reloaded in the open
browser as essays change. It builds into its own folder (build.preview_output),
so a draft never reaches the published one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from html import escape
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from ..build import BuildReport, build, preview_output
from ..config import Settings
from ..errors import NewsletterError
from ..render import template_environment
from .published import PublishedFiles

log = logging.getLogger("newsletter.preview")
LOOPBACK_HOSTS = ["127.0.0.1", "localhost"]


@dataclass
class PreviewState:
    settings: Settings
    report: BuildReport
    generation: int = 0
    changed: asyncio.Condition | None = None
    closing: bool = field(default=False)
    problem: str = ""  # a build-wide error (a broken template), shown above everything

    def errors_for(self, slug: str) -> list[str]:
        return [str(e) for e in self.report.errors if e.path.stem == slug]


async def _rebuild(state: PreviewState) -> None:
    try:
        state.report = await anyio.to_thread.run_sync(lambda: build(state.settings, drafts=True))
        state.problem = ""
    except NewsletterError as exc:
        state.problem = str(exc)  # keep the last good build on show, with the error above it
    state.generation += 1
    log.info("rebuilt %d issue(s); %d error(s)", len(state.report.built), len(state.report.errors))
    if state.changed is not None:
        async with state.changed:
            state.changed.notify_all()


async def _watch(state: PreviewState, stop: anyio.Event) -> None:
    """Rebuild whenever an essay or a template is saved."""
    from watchfiles import awatch

    folders = [str(f) for f in (state.settings.issues_path, state.settings.templates_path) if f.is_dir()]
    async for _changes in awatch(*folders, stop_event=stop, debounce=200, step=50):
        try:
            await _rebuild(state)
        except Exception:  # nothing a file on disk does may stop the preview
            log.exception("rebuild failed")


def create_app(settings: Settings, report: BuildReport | None = None, watch: bool = True) -> Starlette:
    state = PreviewState(settings=settings, report=report or build(settings, drafts=True))
    pages = _PreviewPages(state)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.changed = asyncio.Condition()
        stop = anyio.Event()
        async with anyio.create_task_group() as tasks:
            if watch:
                tasks.start_soon(_watch, state, stop)
            yield
            state.closing = True
            stop.set()

    app = Starlette(
        routes=[
            Route("/", pages.index),
            Route("/issues/{slug}/", pages.issue),
            Route("/events", pages.events),
            Mount("/build", PublishedFiles(pages.output)),
        ],
        lifespan=lifespan,
        # The preview listens on loopback only; a page elsewhere could still reach it through a
        # name it resolves to 127.0.0.1 (DNS rebinding), so any other Host is refused.
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_HOSTS)],
    )
    app.state.preview = state
    return app


class _PreviewPages:
    """The preview's pages, drawn from the newest build in `state`."""

    def __init__(self, state: PreviewState):
        self.state = state
        self.settings = state.settings
        self.env = template_environment(state.settings)
        self.output = preview_output(state.settings)

    def render(self, template: str, **values: object) -> HTMLResponse:
        state = self.state
        html = self.env.get_template(template).render(
            generation=state.generation, errors=[state.problem] * bool(state.problem) + [str(e) for e in state.report.errors],
            **values,
        )
        return HTMLResponse(html)

    async def index(self, request: Request) -> Response:
        issues = sorted(self.state.report.essays, key=lambda e: (e.date, e.slug), reverse=True)
        return self.render("preview_index.html.j2", issues=issues)

    async def issue(self, request: Request) -> Response:
        slug = request.path_params["slug"]
        report = self.state.report
        essay = next((e for e in report.essays if e.slug == slug), None)
        errors = self.state.errors_for(slug)
        text_file = self.output / slug / "email.txt"
        if essay is None and not errors:
            return HTMLResponse(f"No issue '{escape(slug)}'.", status_code=404)  # the slug is the visitor's text
        text = text_file.read_text(encoding="utf-8") if text_file.is_file() else ""
        warnings = [str(w) for w in report.warnings if essay is not None and w.path == essay.path]
        return self.render("preview_issue.html.j2", essay=essay, slug=slug, issue_errors=errors, issue_warnings=warnings,
                           text=text, built=(self.output / slug / "email.html").is_file())

    async def events(self, request: Request) -> Response:
        """Server-sent events: the build generation, sent again whenever it changes."""
        state = self.state

        async def stream() -> AsyncIterator[str]:
            seen = -1
            while not state.closing:
                if seen != state.generation:
                    seen = state.generation
                    yield f"data: {seen}\n\n"
                    continue
                assert state.changed is not None
                async with state.changed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(state.changed.wait(), timeout=1.0)
                if await request.is_disconnected():
                    break
                yield ": keep-alive\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})
