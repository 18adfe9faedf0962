"""The pre-send check: what would embarrass an issue once it is in readers' inboxes.

Errors stop `queue` (unless --force): an HTML part Gmail would clip, an image
without alt text or size, a link to a page or image of ours that is not
published, a template placeholder left in, no unsubscribe link, text below
WCAG AA contrast in light or dark mode. Warnings are said and do not stop a
send: no summary, a subject that is long or shouted, a link with no text.
With `online`, links to other sites are fetched too, politely.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from urllib.parse import urldefrag, urlsplit

from lxml import html as lxml_html
from lxml.html import HtmlElement

from .build import BuildReport, build, preview_output, published_files
from .config import Settings
from .contrast import low_contrast
from .errors import NewsletterError
from .essays import Essay, find_essay
from .images import is_external, line_of_text
from .markup import markdown
from .personalize import UNSUBSCRIBE_PLACEHOLDER, personal_html, personal_text
from .tokens import Signer, unsubscribe_url

# Gmail clips an HTML part above 102 KB; the margin leaves room for what providers add.
MAX_HTML_BYTES = 90 * 1024
MAX_SUBJECT = 70
MIN_SHOUTING_LETTERS = 3  # a subject of more letters than this, all capitals, shouts
PLACEHOLDERS = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|%%[A-Za-z_]+%%|\*\|[A-Z_]+\|\*")
ONLINE_TIMEOUT = 10.0
ONLINE_INTERVAL = 1.0  # seconds between two requests to the same site


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    severity: Severity
    path: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{self.severity}: {where}: {self.message}"


@dataclass
class CheckReport:
    checked: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity is Severity.WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors


class _Sources:
    """Where in the essay a link or image comes from, for messages that name the line."""

    def __init__(self, essay: Essay):
        self.essay = essay
        self.links: dict[str, int | None] = {}
        self.images: list[int | None] = []
        self.texts: list[tuple[str, int | None]] = []
        for block in markdown().parse(essay.body):
            for child in block.children or []:
                if child.type == "link_open":
                    href = str(child.attrs.get("href", ""))
                    self.links.setdefault(href, line_of_text(essay, block, href))
                elif child.type == "image":
                    self.images.append(line_of_text(essay, block, str(child.attrs.get("src", ""))))

    def line_of(self, needle: str) -> int | None:
        for number, text in enumerate(self.essay.body.splitlines()):
            if needle in text:
                return self.essay.line_of(number)
        return None


def _published_path(href: str, site_url: str) -> str | None:
    """The file under the output folder an absolute link of ours names, or None if it is not ours."""
    base = site_url + "/"
    url = urldefrag(href)[0].split("?", 1)[0]
    if not (url + "/").startswith(base):
        return None
    rest = url[len(base):]
    return rest + "index.html" if rest == "" or rest.endswith("/") else rest


def check_issue(settings: Settings, essay: Essay, output: Path) -> list[Problem]:
    """Every problem of one built issue in `output`, with the essay's lines where known."""
    check = _IssueCheck(settings, essay)
    folder = output / essay.slug
    html = (folder / "email.html").read_text(encoding="utf-8")
    text = (folder / "email.txt").read_text(encoding="utf-8")
    check.size_and_placeholders(html, text)
    doc = lxml_html.document_fromstring(html)
    check.unsubscribe_links(doc, text)
    check.images(doc)
    check.links(doc, published_files(output))
    check.link_texts(doc)
    for scheme, sample, ratio in low_contrast(doc):
        check.error(f"text below WCAG AA contrast in {scheme} mode: {sample} ({ratio:.2f}:1, needs 4.5:1); "
                    "change the template's colours")
    check.subject_and_summary()
    return check.problems


class _IssueCheck:
    """The checks of one built issue, each adding to `problems`."""

    def __init__(self, settings: Settings, essay: Essay):
        self.settings = settings
        self.essay = essay
        self.sources = _Sources(essay)
        self.problems: list[Problem] = []

    def error(self, message: str, line: int | None = None) -> None:
        self.problems.append(Problem(Severity.ERROR, self.essay.path, line, message))

    def warning(self, message: str, line: int | None = None) -> None:
        self.problems.append(Problem(Severity.WARNING, self.essay.path, line, message))

    def size_and_placeholders(self, html: str, text: str) -> None:
        # As long as a real reader's link: the size that matters is the one Gmail receives.
        url = unsubscribe_url(self.settings, Signer("a secret only for measuring").token(2**31 - 1, self.essay.slug))
        personal = personal_html(html, url)
        size = len(personal.encode("utf-8"))
        if size > MAX_HTML_BYTES:
            self.error(f"the HTML part is {size / 1024:.0f} KB once personalised, over {MAX_HTML_BYTES // 1024} KB: Gmail clips it "
                       "and hides the unsubscribe link; shorten the essay or split it")
        for part, content in (("HTML", personal), ("text", personal_text(text, url))):
            for found in sorted(set(PLACEHOLDERS.findall(content))):
                self.error(f"the {part} part still holds the placeholder {found!r}; replace it with real text",
                           self.sources.line_of(found))

    def unsubscribe_links(self, doc: HtmlElement, text: str) -> None:
        if not any(a.get("href") == UNSUBSCRIBE_PLACEHOLDER for a in doc.iter("a")):
            self.error("the HTML part has no unsubscribe link; keep <a href=\"{{ unsubscribe_url }}\"> in email.html.j2")
        if UNSUBSCRIBE_PLACEHOLDER not in text:
            self.error("the text part has no unsubscribe link; keep {{ unsubscribe_url }} in email.txt.j2")

    def images(self, doc: HtmlElement) -> None:
        columns = [node for node in doc.iter() if "content" in (node.get("class") or "").split()]
        images = [img for node in columns for img in node.iter("img")] if columns else list(doc.iter("img"))
        for number, img in enumerate(images):
            src = img.get("src", "")
            line = self.sources.images[number] if number < len(self.sources.images) else None
            if not (img.get("alt") or "").strip():
                self.error(f"image '{src}' has no alt text; write ![what it shows](…) for readers who cannot see it", line)
            if not img.get("width") or not img.get("height"):
                self.error(f"image '{src}' has no width or height (Outlook shows it at full size); use an image file beside "
                           "the essay, which the build sizes", line)

    def links(self, doc: HtmlElement, published: frozenset[str]) -> None:
        ids = {node.get("id") for node in doc.iter() if node.get("id")}
        base_url = self.settings.base_url
        site_url = self.settings.site_url
        for node in doc.iter("a", "img"):
            href = node.get("href") if node.tag == "a" else node.get("src")
            if not href or href == UNSUBSCRIBE_PLACEHOLDER or href.startswith(("mailto:", "tel:")):
                continue
            line = self.sources.links.get(href)
            target = _published_path(href, site_url)
            if href.startswith("#"):
                if href[1:] not in ids:
                    self.error(f"link '{href}' points to nothing in the email; fix the anchor", line)
            elif not is_external(href):
                self.error(f"link '{href}' is relative, and mail clients cannot follow it; link to the full address under "
                           f"{base_url}", line)
            elif target is not None and target not in published:
                self.error(f"link '{href}' goes to a page or image of ours that is not published; fix the link or publish it",
                           line)

    def link_texts(self, doc: HtmlElement) -> None:
        for node in doc.iter("a"):
            has_image_alt = any((img.get("alt") or "").strip() for img in node.iter("img"))
            if not "".join(map(str, node.itertext())).strip() and not has_image_alt:
                self.warning(f"link to '{node.get('href', '')}' has no text; readers and screen readers cannot tell where "
                             "it goes", self.sources.links.get(node.get("href", "")))

    def subject_and_summary(self) -> None:
        title = self.essay.title
        if not self.essay.summary:
            self.warning("no summary: mail apps show the first words of the email instead; add 'summary:' to the front matter", 1)
        if len(title) > MAX_SUBJECT:
            self.warning(f"the subject is {len(title)} characters; phones cut it after about {MAX_SUBJECT}: shorten the title")
        if len([c for c in title if c.isalpha()]) > MIN_SHOUTING_LETTERS and title.upper() == title:
            self.warning("the subject is all in capitals, which reads as shouting and as spam; write it in sentence case")


def external_links(output: Path, slug: str, site_url: str) -> list[str]:
    """Every link of the issue's HTML part to another site, in order, once each."""
    doc = lxml_html.document_fromstring((output / slug / "email.html").read_text(encoding="utf-8"))
    found: dict[str, None] = {}
    for node in doc.iter("a", "img"):
        href = node.get("href") if node.tag == "a" else node.get("src")
        if href and urlsplit(href).scheme in ("http", "https") and _published_path(href, site_url) is None:
            found.setdefault(urldefrag(href)[0])
    return list(found)


class LinkChecker:
    """Fetches links with a timeout, never more often than once per `interval` seconds per site."""

    def __init__(self, timeout: float = ONLINE_TIMEOUT, interval: float = ONLINE_INTERVAL,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.timeout, self.interval, self.clock, self.sleep = timeout, interval, clock, sleep
        self.last: dict[str, float] = {}
        self.results: dict[str, tuple[Severity, str] | None] = {}

    def _wait_for(self, host: str) -> None:
        if host in self.last:
            delay = self.last[host] + self.interval - self.clock()
            if delay > 0:
                self.sleep(delay)
        self.last[host] = self.clock()

    def check(self, url: str) -> tuple[Severity, str] | None:
        """None if the link works, else how bad and why."""
        if url not in self.results:
            self.results[url] = self._fetch(url)
        return self.results[url]

    def _fetch(self, url: str) -> tuple[Severity, str] | None:
        host = urlsplit(url).netloc.lower()
        for method in ("HEAD", "GET"):
            self._wait_for(host)
            request = urllib.request.Request(url, method=method, headers={"User-Agent": "newsletter-check/1 (link check before sending)"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    response.read(0)
                return None
            except urllib.error.HTTPError as exc:
                if method == "HEAD" and exc.code in (403, 405, 501):
                    continue  # some sites refuse HEAD; ask as a browser would
                return _http_problem(exc.code)
            except (urllib.error.URLError, OSError) as exc:  # a timeout too: TimeoutError is an OSError
                reason = getattr(exc, "reason", exc)
                if isinstance(reason, TimeoutError):
                    return Severity.WARNING, f"did not answer within {self.timeout:g} s; check it in a browser"
                return Severity.WARNING, f"could not be reached ({reason}); check it in a browser"
        return None


def _http_problem(code: int) -> tuple[Severity, str]:
    if code in (404, 410):
        return Severity.ERROR, f"answers {code}: the page is gone; fix or remove the link"
    return Severity.WARNING, f"answers {code}; check it in a browser"


def check_issues(
    settings: Settings,
    names: Iterable[str] = (),
    *,
    online: bool = False,
    links: LinkChecker | None = None,
    report: BuildReport | None = None,
) -> CheckReport:
    """Build, then check the issues named (every published issue when none is named).

    A draft named is checked from the preview's build. Raises NewsletterError for a name that is no issue.
    """
    report = report or build(settings)
    names = list(names)
    chosen: list[tuple[Essay, Path]] = []
    result = CheckReport()
    preview: BuildReport | None = None
    for name in names or [e.slug for e in report.essays]:
        essay = find_essay(report.essays, name)
        output = settings.output_path
        if essay is None and find_essay(report.drafts, name) is not None:
            preview = preview or build(settings, drafts=True)
            essay, output = find_essay(preview.essays, name), preview_output(settings)
        if essay is None:
            broken = [e for e in report.errors if e.path.stem == name or e.path.stem.endswith(f"-{name}")]
            if broken:
                result.problems.append(Problem(Severity.ERROR, broken[0].path, broken[0].line, f"does not build: {broken[0].message}"))
                result.checked.append(name)
                continue
            known = ", ".join(sorted(e.slug for e in report.essays)) or "none"
            raise NewsletterError(f"there is no issue '{name}'; the issues are: {known}")
        chosen.append((essay, output))

    checker = links or (LinkChecker() if online else None)
    for essay, output in sorted(chosen, key=lambda pair: pair[0].path):
        result.checked.append(essay.slug)
        problems = check_issue(settings, essay, output)
        if checker is not None:
            sources = _Sources(essay)
            for url in external_links(output, essay.slug, settings.site_url):
                outcome = checker.check(url)
                if outcome is not None:
                    severity, why = outcome
                    problems.append(Problem(severity, essay.path, sources.links.get(url), f"link '{url}' {why}"))
        result.problems.extend(sorted(problems, key=lambda p: (p.line or 0, p.severity != Severity.ERROR)))
    return result


class CheckFailed(NewsletterError):
    """An issue has errors the pre-send check found; str() says how many and how to go on."""


def refuse_unless_checked(settings: Settings, essay: Essay, *, force: bool, say: Callable[[str], None]) -> CheckReport:
    """What `queue` runs: the check of one issue, its problems said; refused on errors unless forced."""
    report = check_issues(settings, [essay.slug])
    for problem in report.problems:
        say(str(problem))
    if report.errors and not force:
        raise CheckFailed(
            f"'{essay.slug}' has {len(report.errors)} error(s) (above); fix them, or queue it anyway with --force"
        )
    return report
