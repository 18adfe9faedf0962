"""The whole build: every essay → build/<slug>/{email.html,email.txt,index.html},
its images under build/images/, plus build/index.html (the archive), build/feed.xml
(an Atom feed) and build/subscribe-form.html (the signup form, to paste into another site).

The build is incremental. build/.manifest.json records, for every issue, the
key it was built from (essay, templates and settings), a digest of each file
it wrote and the images it published. An issue is rendered again when its key
changes, or when one of its files is missing or differs from what the build
wrote (edited by hand).

The manifest is also the list of what is published: `serve` and the preview
serve the files it names and nothing else (see newsletter/web/published.py).

Drafts (`draft: true`) are built only into the preview's own folder
(preview_output), never into the output folder that is published.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .atomic import make_folder, write_atomic
from .config import Settings
from .errors import NewsletterError
from .essays import Essay, EssayError, EssayWarning, read_essays
from .render import RenderedIssue, Renderer, templates_digest

if TYPE_CHECKING:
    from .messages import Issue

MANIFEST = ".manifest.json"
OUTPUT_FILES = ("email.html", "email.txt", "index.html")
# Below this many essays to render, starting worker processes costs more than it saves.
PARALLEL_THRESHOLD = 24
MANIFEST_VERSION = 2
SITE_FILES = ("index.html", "feed.xml")


@dataclass
class BuildReport:
    built: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    errors: list[EssayError] = field(default_factory=list)
    warnings: list[EssayWarning] = field(default_factory=list)
    essays: list[Essay] = field(default_factory=list)  # built into this output, drafts too in the preview's
    drafts: list[Essay] = field(default_factory=list)  # every draft, built here or not

    @property
    def ok(self) -> bool:
        return not self.errors


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _build_key(essay: Essay, templates: str, settings: Settings) -> str:
    parts = [essay.digest, templates, settings.site_name, settings.base_url, settings.language, settings.postal_address]
    return _digest("\0".join(parts).encode())


def preview_output(settings: Settings) -> Path:
    """The preview's own output folder: drafts are built there, never into the published one."""
    return settings.data_path / "preview"


def _read_manifest(out: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
        return {}
    issues = data.get("issues")
    return issues if isinstance(issues, dict) else {}


def published_files(out: Path) -> frozenset[str]:
    """Every file the last build wrote into `out`, as paths relative to it: all that may be served."""
    try:
        data = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return frozenset()
    if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION:
        return frozenset()
    files = {name for name in data.get("site", {}) if name in SITE_FILES}
    for slug, recorded in data.get("issues", {}).items():
        files.update(f"{slug}/{name}" for name in recorded.get("outputs", {}) if name in OUTPUT_FILES)
        files.update(str(name) for name in recorded.get("images", ()))
    return frozenset(files)


def _outputs_intact(out: Path, slug: str, recorded: dict[str, Any]) -> bool:
    outputs = recorded.get("outputs", {})
    for name in OUTPUT_FILES:
        try:
            if _digest((out / slug / name).read_bytes()) != outputs.get(name):
                return False
        except OSError:
            return False
    return all((out / name).is_file() for name in recorded.get("images", ()))


def _files_of(rendered: RenderedIssue) -> dict[str, bytes]:
    return {
        "email.html": rendered.email_html.encode("utf-8"),
        "email.txt": rendered.email_text.encode("utf-8"),
        "index.html": rendered.web_html.encode("utf-8"),
    }


@dataclass(frozen=True)
class BuiltIssue:
    """What a worker sends back for an issue it rendered and wrote: small, so little crosses between processes."""

    entry: dict[str, Any]  # the issue's manifest entry
    warnings: tuple[EssayWarning, ...]


# Each worker process keeps one Renderer and the output folder, set once by the pool initializer.
_worker: dict[str, Any] = {}


def _init_worker(settings: Settings, output: Path) -> None:
    _worker["renderer"] = Renderer(settings, output)
    _worker["output"] = output


def _build_one(renderer: Renderer, out: Path, essay: Essay, key: str) -> BuiltIssue | EssayError:
    """Render one issue and write its files where it is rendered, in parallel with the others."""
    try:
        rendered = renderer.render(essay)
    except EssayError as exc:  # a missing image: this essay fails, the others build
        return exc
    return BuiltIssue(_write_issue(out, essay, rendered, key), rendered.warnings)


def _build_in_worker(job: tuple[Essay, str]) -> BuiltIssue | EssayError:
    return _build_one(_worker["renderer"], _worker["output"], *job)


def _build_all(settings: Settings, output: Path, essays: list[Essay],
               keys: dict[str, str]) -> Iterable[tuple[Essay, BuiltIssue | EssayError]]:
    workers = min(os.cpu_count() or 1, 4)
    if len(essays) < PARALLEL_THRESHOLD or workers < 2:
        renderer = Renderer(settings, output)
        for essay in essays:
            yield essay, _build_one(renderer, output, essay, keys[essay.slug])
        return
    jobs = [(essay, keys[essay.slug]) for essay in essays]
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(settings, output)) as pool:
        yield from zip(essays, pool.map(_build_in_worker, jobs, chunksize=8), strict=True)


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
    *,
    drafts: bool = False,
) -> BuildReport:
    """Build every essay; a bad essay is reported and never stops the others.

    Builds the published issues into the output folder; with `drafts`, builds
    drafts too, into the preview's own folder (preview_output) instead.
    `progress(done, total)` is called after each issue that had to be rendered.
    """
    if not settings.issues_path.is_dir():
        raise IssueNotReady(
            f"{settings.issues_path} does not exist; run newsletter in the folder that holds newsletter.toml "
            "and issues/, or make one with newsletter init"
        )
    out = preview_output(settings) if drafts else settings.output_path
    make_folder(out)
    essays, errors = read_essays(settings.issues_path)
    report = BuildReport(errors=errors, drafts=[e for e in essays if e.draft])
    essays = [e for e in essays if drafts or not e.draft]
    templates = templates_digest(settings.templates_path)
    manifest = _read_manifest(out)
    keys = {essay.slug: _build_key(essay, templates, settings) for essay in essays}

    new_manifest: dict[str, dict[str, Any]] = {}
    todo: list[Essay] = []
    for essay in essays:
        recorded = manifest.get(essay.slug)
        if recorded and recorded.get("key") == keys[essay.slug] and _outputs_intact(out, essay.slug, recorded):
            report.unchanged.append(essay.slug)
            report.essays.append(essay)
            new_manifest[essay.slug] = recorded
            report.warnings.extend(EssayWarning(essay.path, line, message) for line, message in recorded.get("warnings", ()))
        else:
            todo.append(essay)
    for done, (essay, built) in enumerate(_build_all(settings, out, todo, keys), start=1):
        if isinstance(built, EssayError):
            errors.append(built)
            continue
        new_manifest[essay.slug] = built.entry
        report.built.append(essay.slug)
        report.essays.append(essay)
        report.warnings.extend(built.warnings)
        if progress:
            progress(done, len(todo))
    report.removed = _remove_stale(out, manifest, new_manifest, {error.path.name for error in errors}, drafts=drafts)

    report.essays.sort(key=lambda e: e.path)
    site = _write_archive(settings, out, [e for e in report.essays if not e.draft])
    write_atomic(
        out / MANIFEST,
        json.dumps({"version": MANIFEST_VERSION, "site": site, "issues": new_manifest}, indent=1, sort_keys=True).encode(),
    )
    return report


def _write_issue(out: Path, essay: Essay, rendered: RenderedIssue, key: str) -> dict[str, Any]:
    """Write one rendered issue's files; returns its manifest entry."""
    files = _files_of(rendered)
    for name, data in files.items():
        write_atomic(out / essay.slug / name, data)
    return {
        "key": key,
        "source": essay.path.name,
        "draft": essay.draft,
        "outputs": {name: _digest(data) for name, data in files.items()},
        "images": sorted({image.name for image in rendered.images}),
        "warnings": [[w.line, w.message] for w in rendered.warnings],
    }


def _remove_stale(
    out: Path, manifest: dict[str, dict[str, Any]], new_manifest: dict[str, dict[str, Any]], failed_sources: set[str], *, drafts: bool
) -> list[str]:
    """Delete what the last build wrote for issues gone from this one, and images no issue uses any more.

    An essay that failed keeps its last good output (kept in `new_manifest`): a typo must not unpublish an issue.
    Returns the slugs removed.
    """
    removed: list[str] = []
    for slug, recorded in manifest.items():
        if slug in new_manifest:
            continue
        if recorded.get("source") in failed_sources and not (recorded.get("draft") and not drafts):
            new_manifest[slug] = recorded
            continue
        for name in OUTPUT_FILES:
            (out / slug / name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            (out / slug).rmdir()  # only if the editor kept nothing else there
        removed.append(slug)
    in_use = {name for recorded in new_manifest.values() for name in recorded.get("images", ())}
    for recorded in manifest.values():
        for name in set(recorded.get("images", ())) - in_use:
            (out / name).unlink(missing_ok=True)
    return removed


# The feed carries the newest issues whole, as feeds do: readers poll it often, and
# a whole back catalogue would make every poll (and every build) pay for all of it.
FEED_ENTRIES = 20


def _write_archive(settings: Settings, out: Path, essays: list[Essay]) -> dict[str, str]:
    """index.html and feed.xml, newest issue first; rewritten only when they change. Returns their digests."""
    renderer = Renderer(settings)
    issues = sorted(essays, key=lambda e: (e.date, e.slug), reverse=True)
    newest = issues[:FEED_ENTRIES]
    contents = {essay.slug: renderer.body(essay).html for essay in newest}  # the feed carries each issue whole
    pages = {
        "index.html": renderer.render_page("archive.html.j2", issues=issues).encode("utf-8"),
        "feed.xml": renderer.render_page("feed.xml.j2", issues=newest, contents=contents).encode("utf-8"),
        # The signup form as a snippet to paste into another site; it posts to base_url.
        "subscribe-form.html": renderer.render_page("subscribe_form.html.j2", form_place="subscribe-form.html").encode("utf-8"),
    }
    for name, data in pages.items():
        _write_if_changed(out / name, data)
    return {name: _digest(data) for name, data in pages.items()}


class IssueNotReady(NewsletterError):
    """The issue named cannot be sent as it stands; str() says why and what to do."""


def ready_issue(
    settings: Settings, name: str, report: BuildReport | None = None, *, drafts: bool = False
) -> tuple[Essay, Issue]:
    """The built issue an editor names (slug, or slug without its date), after a build.

    Refuses an issue that does not build: nothing half-made is ever sent.
    Refuses a draft unless `drafts` (a test copy to the editor), which comes from the preview's build.
    """
    from .essays import find_essay
    from .messages import Issue

    report = report or build(settings)
    essay = find_essay(report.essays, name)
    draft = find_essay(report.drafts, name)
    output = settings.output_path
    if draft is not None and essay is None and drafts:
        report, output = build(settings, drafts=True), preview_output(settings)
        essay = find_essay(report.essays, name)
    elif draft is not None and (essay is None or essay.draft):
        raise IssueNotReady(
            f"'{name}' is a draft ({draft.path.name} has 'draft: true' in its front matter), so it is not published "
            "and cannot be sent; to publish it, delete that line (or write 'draft: false'), then queue it again"
        )
    if essay is None:
        broken = [e for e in report.errors if e.path.stem == name or e.path.stem.endswith(f"-{name}")]
        if broken:
            raise IssueNotReady(f"'{name}' does not build: {broken[0]}")
        known = ", ".join(sorted(e.slug for e in report.essays)) or "none"
        raise IssueNotReady(f"there is no issue '{name}'; the issues are: {known}")
    folder = output / essay.slug
    issue = Issue(
        slug=essay.slug,
        subject=essay.title,
        html=(folder / "email.html").read_text(encoding="utf-8"),
        text=(folder / "email.txt").read_text(encoding="utf-8"),
    )
    return essay, issue


def newest_essay(report: BuildReport) -> Essay | None:
    return max(report.essays, key=lambda e: (e.date, e.slug), default=None)
