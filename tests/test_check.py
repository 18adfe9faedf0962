"""newsletter check: the seven samples pass, and each defect a writer or a template can bring is reported."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from typing import ClassVar
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from newsletter.check import LinkChecker, Severity, check_issues
from newsletter.cli import cli
from newsletter.config import Settings

from .conftest import override_template, write_essay, write_image

SLUG = "2017-03-20-seeded"


def problems_of(settings: Settings, slug: str = SLUG, **kwargs: object) -> list[str]:
    return [str(p) for p in check_issues(settings, [slug], **kwargs).problems]  # type: ignore[arg-type]  # each test passes check_issues' own options


def seeded(settings: Settings, body: str, front: str = 'title: "Seeded"\ndate: 2017-03-20\nsummary: "A summary."') -> str:
    return str(write_essay(settings, SLUG, front, body))


def test_the_seven_sample_essays_pass(settings: Settings) -> None:
    result = CliRunner().invoke(cli, ["check"])
    assert result.exit_code == 0, result.output
    assert "Checked 7 issue(s): 0 error(s), 0 warning(s)." in result.output


def test_the_hard_essay_passes(hard_essay: Settings) -> None:
    report = check_issues(hard_essay, ["the-hard-one"])
    assert report.ok and not report.warnings, report.problems


def test_an_html_part_over_90_kb_once_personalised_is_an_error(settings: Settings) -> None:
    path = seeded(settings, "\n\n".join(f"Paragraph {n}: " + "words of the essay " * 30 for n in range(180)))
    [problem] = problems_of(settings)
    assert problem.startswith(f"error: {path}: the HTML part is ") and "KB once personalised, over 90 KB" in problem


def test_an_image_without_alt_text_or_size_is_an_error_naming_the_line(settings: Settings) -> None:
    write_image(settings.issues_path / "chart.png", 300, 200)
    path = seeded(settings, "Intro.\n\n![](chart.png)\n\n![A remote chart](https://images.example.org/chart.png)")
    problems = problems_of(settings)
    assert any(p.startswith(f"error: {path}:9: image 'http://127.0.0.1:8000/images/chart-") and "has no alt text" in p for p in problems)
    assert f"error: {path}:11: image 'https://images.example.org/chart.png' has no width or height (Outlook shows it at full size); " \
           "use an image file beside the essay, which the build sizes" in problems
    assert len(problems) == 2


def test_links_to_our_own_missing_pages_and_relative_links_are_errors(settings: Settings) -> None:
    path = seeded(settings, "See [last week](http://127.0.0.1:8000/2017-03-13-nowhere/) and [this one](http://127.0.0.1:8000/2017-02-13-say-what-you-mean/).\n\n"
                            "And [a file](notes.html), and [the archive](http://127.0.0.1:8000/).")
    assert problems_of(settings) == [
        f"error: {path}:7: link 'http://127.0.0.1:8000/2017-03-13-nowhere/' goes to a page or image of ours that is not published; "
        "fix the link or publish it",
        f"error: {path}:9: link 'notes.html' is relative, and mail clients cannot follow it; link to the full address under http://127.0.0.1:8000",
    ]


def test_a_placeholder_left_in_is_an_error(settings: Settings) -> None:
    path = seeded(settings, "Intro.\n\nDear {{ first_name }}, and %%last_name%%.")
    problems = problems_of(settings)
    assert f"error: {path}:9: the HTML part still holds the placeholder '{{{{ first_name }}}}'; replace it with real text" in problems
    assert f"error: {path}:9: the text part still holds the placeholder '%%last_name%%'; replace it with real text" in problems


def test_a_template_without_an_unsubscribe_link_is_an_error(settings: Settings) -> None:
    removals = (
        ("email.html.j2", '<a href="{{ unsubscribe_url }}">Unsubscribe</a>'), ("email.txt.j2", "Unsubscribe: {{ unsubscribe_url }}"))
    for name, old in removals:
        template = override_template(settings, name)
        text = template.read_text(encoding="utf-8")
        assert old in text
        template.write_text(text.replace(old, "Unsubscribe"), encoding="utf-8")
    problems = problems_of(settings, "say-what-you-mean")
    assert any("the HTML part has no unsubscribe link" in p for p in problems)
    assert any("the text part has no unsubscribe link" in p for p in problems)


@pytest.mark.parametrize(("scheme", "old", "new"), [
    ("light", ".content .dateline { font-family: Helvetica, Arial, sans-serif; font-size: 14px; color: #595959;",
     ".content .dateline { font-family: Helvetica, Arial, sans-serif; font-size: 14px; color: #999999;"),
    ("dark", ".content .dateline, .footer, .footer a { color: #b3aea6 !important; }",
     ".content .dateline, .footer, .footer a { color: #555555 !important; }"),
])
def test_text_below_aa_contrast_is_an_error_in_light_and_in_dark(settings: Settings, scheme: str, old: str, new: str) -> None:
    template = override_template(settings, "email.html.j2")
    text = template.read_text(encoding="utf-8")
    assert old in text
    template.write_text(text.replace(old, new), encoding="utf-8")
    problems = problems_of(settings, "say-what-you-mean")
    assert problems and all(f"text below WCAG AA contrast in {scheme} mode" in p for p in problems), problems
    assert any("'13 February 2017 ·' is" in p or "Unsubscribe" in p or "You are receiving" in p for p in problems)


def test_warnings_no_summary_long_or_shouted_subject_and_empty_link(settings: Settings) -> None:
    shouted = 'title: "' + "A VERY LONG SHOUTED TITLE " * 3 + '"\ndate: 2017-03-20'
    path = seeded(settings, "Intro.\n\nA link with no words: [](https://example.org/).", front=shouted)
    report = check_issues(settings, [SLUG])
    assert report.ok and all(p.severity is Severity.WARNING for p in report.problems)
    messages = [str(p) for p in report.problems]
    assert (f"warning: {path}:1: no summary: mail apps show the first words of the email instead; "
            "add 'summary:' to the front matter") in messages
    assert any("the subject is 77 characters; phones cut it after about 70" in m for m in messages)
    assert any("all in capitals" in m for m in messages)
    assert (f"warning: {path}:8: link to 'https://example.org/' has no text; "
            "readers and screen readers cannot tell where it goes") in messages


def test_check_command_prints_each_problem_and_exits_1_on_errors(settings: Settings) -> None:
    path = seeded(settings, "Intro.\n\n![](https://images.example.org/x.png)")
    result = CliRunner().invoke(cli, ["check", "seeded", "say-what-you-mean"])
    assert result.exit_code == 1
    assert f"error: {path}:9: image 'https://images.example.org/x.png' has no alt text" in result.output
    assert "Checked 2 issue(s): 2 error(s), 0 warning(s)." in result.output
    unknown = CliRunner().invoke(cli, ["check", "no-such-issue"])
    assert unknown.exit_code == 1 and "there is no issue 'no-such-issue'" in unknown.output and "Traceback" not in unknown.output


def test_a_draft_can_be_checked_before_it_is_published(settings: Settings) -> None:
    seeded(settings, "Intro.\n\n[](https://example.org/)", front='title: "Seeded"\ndate: 2017-03-20\nsummary: "s"\ndraft: true')
    assert [p.severity for p in check_issues(settings, ["seeded"]).problems] == [Severity.WARNING]
    assert "seeded" not in check_issues(settings).checked


def test_queue_refuses_an_issue_with_errors_unless_forced(store_settings: Settings) -> None:
    seeded(store_settings, "Intro.\n\n![](https://images.example.org/x.png)")
    refused = CliRunner().invoke(cli, ["queue", "seeded", "--at", "now", "--yes"])
    assert refused.exit_code == 1
    assert "has no alt text" in refused.output and "has 2 error(s) (above); fix them, or queue it anyway with --force" in refused.output
    assert "Queued" not in refused.output
    forced = CliRunner().invoke(cli, ["queue", "seeded", "--at", "now", "--yes", "--force"])
    assert forced.exit_code == 0 and "Queued as send #1" in forced.output
    clean = CliRunner().invoke(cli, ["queue", "say-what-you-mean", "--at", "now", "--yes"])
    assert clean.exit_code == 0 and "Queued as send #2" in clean.output


class _Site(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str, float]]] = []

    def _answer(self) -> None:
        type(self).seen.append((self.command, self.path, time.monotonic()))
        if self.path == "/slow":
            time.sleep(1.5)
        status = {"/gone": 404, "/broken": 500}.get(self.path, 200)
        if self.path == "/no-head" and self.command == "HEAD":
            status = 405
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    _Site.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_online_check_reports_dead_and_slow_links_politely(settings: Settings, site: str) -> None:
    lines = [f"[ok]({site}/ok)", f"[gone]({site}/gone)", f"[slow]({site}/slow)", f"[no head]({site}/no-head)", f"[broken]({site}/broken)"]
    path = seeded(settings, "\n\n".join(lines))
    sent: list[float] = []  # when the checker let each request go (the server's clock would add its own delays)

    class Recorded(LinkChecker):
        def _wait_for(self, host: str) -> None:
            super()._wait_for(host)
            sent.append(self.last[host])

    checker = Recorded(timeout=0.5, interval=0.2)
    report = check_issues(settings, [SLUG], links=checker)
    assert [str(p) for p in report.problems] == [
        f"error: {path}:9: link '{site}/gone' answers 404: the page is gone; fix or remove the link",
        f"warning: {path}:11: link '{site}/slow' did not answer within 0.5 s; check it in a browser",
        f"warning: {path}:15: link '{site}/broken' answers 500; check it in a browser",
    ]
    assert ("GET", "/no-head") in [(m, p) for m, p, _ in _Site.seen]
    assert len(sent) == len(_Site.seen), "every request the site saw went through the pace"
    assert all(b - a >= 0.2 for a, b in itertools.pairwise(sent)), "requests to one site must be spaced"


def test_without_online_no_external_link_is_fetched(settings: Settings, site: str) -> None:
    seeded(settings, f"[gone]({site}/gone)")
    assert check_issues(settings, [SLUG]).ok and _Site.seen == []
