"""Essay → the finished email (HTML with inlined CSS, see inliner.py, and text) and its web page.

The email is rendered and inlined once per issue. What differs per recipient
is left as a placeholder (see personalize.py), so a personal copy costs one
string substitution, never a render.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

import jinja2
from markdown_it.token import Token

from .config import Settings
from .errors import NewsletterError
from .essays import Essay, EssayWarning
from .images import PlacedImage, place_images, publish
from .inliner import inline_css
from .markup import markdown
from .personalize import UNSUBSCRIBE_PLACEHOLDER
from .textpart import tokens_to_text

# Scripts written right to left: their pages and emails need dir="rtl".
RTL_LANGUAGES = frozenset({"ar", "arc", "dv", "fa", "he", "ku", "ps", "sd", "ug", "ur", "yi"})


def direction(language: str) -> str:
    return "rtl" if language.split("-", 1)[0].lower() in RTL_LANGUAGES else "ltr"


@dataclass(frozen=True)
class RenderedIssue:
    slug: str
    email_html: str
    email_text: str
    web_html: str
    images: tuple[PlacedImage, ...] = ()
    warnings: tuple[EssayWarning, ...] = ()


@dataclass(frozen=True)
class Body:
    """An essay's body parsed once: its tokens (images placed) and its HTML."""

    tokens: list[Token]
    html: str
    images: list[PlacedImage]
    warnings: list[EssayWarning]


class TemplateProblem(NewsletterError):
    """A template is missing or broken; str() names the file and line."""


def _template_problem(exc: jinja2.TemplateError, folder: Path) -> TemplateProblem:
    if isinstance(exc, jinja2.TemplateNotFound):
        return TemplateProblem(f"{folder / str(exc.name)}: template not found here nor among the packaged templates")
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return TemplateProblem(f"{exc.filename or folder / str(exc.name)}:{exc.lineno}: {exc.message}")
    return TemplateProblem(f"{folder}: a template failed: {exc.message}")


PACKAGED_TEMPLATES = Path(__file__).parent / "templates"


def template_environment(settings: Settings) -> jinja2.Environment:
    """The one template environment of every email and page: the newsletter's own
    templates/ first, file by file, then the packaged ones.

    What every template may use is set here, once. Globals: site_name, language,
    base_url (without its trailing slash), archive_url (base_url + "/") and
    postal_address. Filters: `date | date_text` ("6 March 2017"), `date | feed_time`
    (Atom's "2017-03-06T00:00:00Z"), `slug | issue_url` (the issue's web page) and
    `language | direction` ("rtl" or "ltr"). A template is given only what is its own:
    the essay, the message, the form.

    HTML and XML are autoescaped, text is not.
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(settings.templates_path), str(PACKAGED_TEMPLATES)]),
        autoescape=lambda name: name is not None and not name.endswith(".txt.j2"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals.update(
        site_name=settings.site_name,
        language=settings.language,
        base_url=settings.site_url,
        archive_url=settings.site_url + "/",
        postal_address=settings.postal_address,  # every footer shows it
    )
    env.filters.update(
        date_text=date_text,
        feed_time=feed_time,
        issue_url=lambda slug: issue_url(settings, slug),
        direction=direction,
    )
    return env


def date_text(day: dt.date) -> str:
    """A date as readers see it: "6 March 2017"."""
    return f"{day.day} {day:%B %Y}"


def feed_time(day: dt.date) -> str:
    """A date as an Atom feed gives it: midnight UTC."""
    return f"{day.isoformat()}T00:00:00Z"


def templates_digest(folder: Path) -> str:
    """Changes whenever any template in use changes: part of every issue's build key."""
    digest = hashlib.sha256()
    for base in (folder, PACKAGED_TEMPLATES):
        digest.update(str(base).encode())
        for path in sorted(base.rglob("*")) if base.is_dir() else ():
            if path.is_file():
                digest.update(path.relative_to(base).as_posix().encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def issue_url(settings: Settings, slug: str) -> str:
    """The issue's page on the web."""
    return f"{settings.site_url}/{slug}/"


class Renderer:
    """Renders essays with one template environment and one Markdown parser."""

    def __init__(self, settings: Settings, output: Path | None = None):
        self.settings = settings
        self.output = output  # where images are published; None renders without writing them
        self.env = template_environment(settings)
        self.md = markdown()

    def body(self, essay: Essay) -> Body:
        """Parse the body once; raises EssayError for an image that cannot be published."""
        env: dict[str, object] = {}
        tokens = self.md.parse(essay.body, env)
        images, warnings = place_images(essay, tokens, self.settings.site_url)
        return Body(tokens, self.md.renderer.render(tokens, self.md.options, env), images, warnings)

    @staticmethod
    def context(essay: Essay) -> dict[str, object]:
        """What an issue's templates get beside the globals: the essay, and the placeholder
        each personal copy replaces with its reader's unsubscribe link."""
        return {
            "slug": essay.slug,
            "title": essay.title,
            "date": essay.date,
            "summary": essay.summary,
            "unsubscribe_url": UNSUBSCRIBE_PLACEHOLDER,
        }

    def render(self, essay: Essay) -> RenderedIssue:
        try:
            return self._render(essay)
        except jinja2.TemplateError as exc:
            raise _template_problem(exc, self.settings.templates_path) from None

    def _render(self, essay: Essay) -> RenderedIssue:
        body = self.body(essay)
        body_text, links = tokens_to_text(body.tokens)
        ctx = self.context(essay)
        email_html = self.env.get_template("email.html.j2").render(ctx, body_html=body.html)
        if self.output is not None:
            publish(body.images, self.output)
        return RenderedIssue(
            slug=essay.slug,
            email_html=inline_css(email_html),
            email_text=self.env.get_template("email.txt.j2").render(ctx, body_text=body_text, links=links),
            web_html=self.env.get_template("web.html.j2").render(ctx, body_html=body.html),
            images=tuple(body.images),
            warnings=tuple(body.warnings),
        )

    def render_page(self, template: str, **values: object) -> str:
        """Any other page (archive, feed, the signup form)."""
        try:
            return self.env.get_template(template).render(**values)
        except jinja2.TemplateError as exc:
            raise _template_problem(exc, self.settings.templates_path) from None
