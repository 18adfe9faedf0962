"""The whole build: every essay → build/<slug>/{email.html,email.txt,index.html},
plus build/index.html (the archive) and build/feed.xml (an Atom feed).

The build is incremental. build/.manifest.json records, for every issue, the
key it was built from (essay, templates and settings) and a digest of each file
it wrote. An issue is rendered again when its key changes, or when one of its
files is missing or differs from what the build wrote (edited by hand).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .atomic import write_atomic
from .config import Settings
from .errors import NewsletterError
from .essays import Essay, EssayError, read_essays
from .render import RenderedIssue, Renderer, issue_url, templates_digest

if TYPE_CHECKING:
    from .messages import Issue

MANIFEST = ".manifest.json"
OUTPUT_FILES = ("email.html", "email.txt", "index.html")
# Below this many essays to render, starting worker processes costs more than it saves.
PARALLEL_THRESHOLD = 24
MANIFEST_VERSION = 1


@dataclass
class BuildReport:
    built: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    errors: list[EssayError] = field(default_factory=list)
    essays: list[Essay] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _build_key(essay: Essay, templates: str, settings: Settings) -> str:
    parts = [essay.digest, templates, settings.site_name, settings.base_url, settings.language, settings.postal_address]
    return _digest("\0".join(parts).encode())


def _read_manifest(out: Path) -> dict[str, dict]:
    try:
        data = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
        return {}
    issues = data.get("issues")
    return issues if isinstance(issues, dict) else {}


def _outputs_intact(folder: Path, recorded: dict[str, str]) -> bool:
    for name in OUTPUT_FILES:
        try:
            if _digest((folder / name).read_bytes()) != recorded.get(name):
                return False
        except OSError:
            return False
    return True


def _files_of(rendered: RenderedIssue) -> dict[str, bytes]:
    return {
        "email.html": rendered.email_html.encode("utf-8"),
        "email.txt": rendered.email_text.encode("utf-8"),
        "index.html": rendered.web_html.encode("utf-8"),
    }


# Worker processes keep one Renderer each, made once by the pool initializer.
_worker_renderer: Renderer | None = None


def _init_worker(settings: Settings) -> None:
    global _worker_renderer
    _worker_renderer = Renderer(settings)


def _render_in_worker(essay: Essay) -> RenderedIssue:
    assert _worker_renderer is not None
    return _worker_renderer.render(essay)


def _render_all(settings: Settings, essays: list[Essay]) -> Iterable[tuple[Essay, RenderedIssue]]:
    workers = min(os.cpu_count() or 1, 4)
    if len(essays) < PARALLEL_THRESHOLD or workers < 2:
        renderer = Renderer(settings)
        for essay in essays:
            yield essay, renderer.render(essay)
        return
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(settings,)) as pool:
        yield from zip(essays, pool.map(_render_in_worker, essays, chunksize=8), strict=True)


def _write_if_changed(path: Path, data: bytes) -> bool:
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    write_atomic(path, data)
    return True


def build(
    settings: Settings,
    progress: Callable[[int, int], None] | None = None,
) -> BuildReport:
    """Build every essay; a bad essay is reported and never stops the others.

    `progress(done, total)` is called after each issue that had to be rendered.
    """
    if not settings.issues_path.is_dir():
        raise IssueNotReady(
            f"{settings.issues_path} does not exist; run newsletter in the folder that holds newsletter.toml "
            "and issues/, or make one with newsletter init"
        )
    out = settings.output_path
    out.mkdir(parents=True, exist_ok=True)
    essays, errors = read_essays(settings.issues_path)
    report = BuildReport(errors=errors, essays=essays)
    templates = templates_digest(settings.templates_path)
    manifest = _read_manifest(out)

    todo: list[Essay] = []
    keys: dict[str, str] = {}
    for essay in essays:
        keys[essay.slug] = _build_key(essay, templates, settings)
        recorded = manifest.get(essay.slug)
        if recorded and recorded.get("key") == keys[essay.slug] and _outputs_intact(out / essay.slug, recorded.get("outputs", {})):
            report.unchanged.append(essay.slug)
        else:
            todo.append(essay)

    new_manifest: dict[str, dict] = {slug: manifest[slug] for slug in report.unchanged}
    for done, (essay, rendered) in enumerate(_render_all(settings, todo), start=1):
        files = _files_of(rendered)
        for name, data in files.items():
            write_atomic(out / essay.slug / name, data)
        new_manifest[essay.slug] = {
            "key": keys[essay.slug],
            "source": essay.path.name,
            "outputs": {name: _digest(data) for name, data in files.items()},
        }
        report.built.append(essay.slug)
        if progress:
            progress(done, len(todo))

    # An essay that failed keeps its last good output: a typo must not unpublish an issue.
    failed_sources = {error.path.name for error in errors}
    for slug, recorded in manifest.items():
        if slug in new_manifest:
            continue
        if recorded.get("source") in failed_sources:
            new_manifest[slug] = recorded
            continue
        for name in OUTPUT_FILES:
            (out / slug / name).unlink(missing_ok=True)
        try:
            (out / slug).rmdir()  # only if the editor kept nothing else there
        except OSError:
            pass
        report.removed.append(slug)

    _write_archive(settings, essays)
    write_atomic(
        out / MANIFEST,
        json.dumps({"version": MANIFEST_VERSION, "issues": new_manifest}, indent=1, sort_keys=True).encode(),
    )
    return report


def _write_archive(settings: Settings, essays: list[Essay]) -> None:
    """build/index.html and build/feed.xml, newest issue first; rewritten only when they change."""
    renderer = Renderer(settings)
    newest_first = sorted(essays, key=lambda e: (e.date, e.slug), reverse=True)
    issues = [
        {
            "slug": essay.slug,
            "title": essay.title,
            "date": essay.date,
            "date_text": f"{essay.date.day} {essay.date:%B %Y}",
            "summary": essay.summary,
            "url": issue_url(settings, essay.slug),
            "updated": f"{essay.date.isoformat()}T00:00:00Z",
            "content": renderer.md.render(essay.body),
        }
        for essay in newest_first
    ]
    updated = issues[0]["updated"] if issues else "1970-01-01T00:00:00Z"
    out = settings.output_path
    _write_if_changed(out / "index.html", renderer.render_page("archive.html.j2", issues=issues).encode("utf-8"))
    _write_if_changed(out / "feed.xml", renderer.render_page("feed.xml.j2", issues=issues, updated=updated).encode("utf-8"))


class IssueNotReady(NewsletterError):
    """The issue named cannot be sent as it stands; str() says why and what to do."""


def ready_issue(settings: Settings, name: str, report: BuildReport | None = None) -> tuple[Essay, Issue]:
    """The built issue an editor names (slug, or slug without its date), after a build.

    Refuses an issue that does not build: nothing half-made is ever sent.
    """
    from .essays import find_essay
    from .messages import Issue

    report = report or build(settings)
    essay = find_essay(report.essays, name)
    if essay is None:
        broken = [e for e in report.errors if e.path.stem == name or e.path.stem.endswith(f"-{name}")]
        if broken:
            raise IssueNotReady(f"'{name}' does not build: {broken[0]}")
        known = ", ".join(sorted(e.slug for e in report.essays)) or "none"
        raise IssueNotReady(f"there is no issue '{name}'; the issues are: {known}")
    folder = settings.output_path / essay.slug
    issue = Issue(
        slug=essay.slug,
        subject=essay.title,
        html=(folder / "email.html").read_text(encoding="utf-8"),
        text=(folder / "email.txt").read_text(encoding="utf-8"),
    )
    return essay, issue


def newest_essay(report: BuildReport) -> Essay | None:
    return max(report.essays, key=lambda e: (e.date, e.slug), default=None)
