"""build, check, and demo: the whole job on the sample newsletter."""

from __future__ import annotations

import sys

import click

from .common import cli, open_store, print_problems, print_run, run_build, settings, show


@cli.command()
def build() -> None:
    """Compile every essay in issues/ into build/.

    Each issue gets build/<slug>/email.html (CSS inlined, for mail clients),
    email.txt (the plain-text part) and index.html (the web version); the
    build also writes build/index.html (the archive) and build/feed.xml.
    Only essays and templates that changed are rendered again. A bad essay is
    reported with its file and line, the others still build, and the exit
    code is 1.
    """
    if not run_build(settings()).ok:
        sys.exit(1)


@cli.command()
@click.argument("issues", nargs=-1, metavar="[ISSUE]...")
@click.option("--online", is_flag=True, help="Also fetch every link to another site (a timeout each, one request a second per site).")
def check(issues: tuple[str, ...], online: bool) -> None:
    """Check issues before sending them: every published issue, or the ISSUEs named.

    Errors (exit code 1): an HTML part over 90 KB once personalised, an image
    without alt text, width or height, a link to a page or image of ours that
    is not published, a template placeholder left in, no unsubscribe link,
    text below WCAG AA contrast in light or dark mode. Warnings: no summary,
    a subject over 70 characters or in capitals, a link with no text.
    `queue` runs the same check and refuses an issue with errors.

    \b
    Examples:
      newsletter check
      newsletter check say-what-you-mean --online
    """
    from ..check import check_issues

    config = settings()
    report = check_issues(config, issues, online=online, report=run_build(config))
    print_problems(report)
    if not report.ok:
        sys.exit(1)


@cli.command()
def demo() -> None:
    """The whole job on the embedded defaults: build the sample issues, import
    subscribers/sample.csv, queue the newest issue for now, send it through
    the provider (the outbox unless configured otherwise) and show where to look.
    Run it again and it sends nothing twice."""
    from ..build import newest_essay, ready_issue
    from ..providers import get_provider
    from ..scheduler import Scheduler
    from ..sends import existing_sends, queue
    from ..store.csvio import import_csv
    from ..store.schema import utcnow
    from ..tokens import load_secret

    config = settings()
    report = run_build(config)
    essay = newest_essay(report)
    if essay is None:
        raise click.ClickException(f"there is no essay in {config.issues_path} to send")
    store = open_store(config)
    sample = config.root / "subscribers" / "sample.csv"
    imported = import_csv(store, sample)
    click.echo(f"Imported {sample.name}: {imported.added} added, {imported.unchanged + imported.updated} already there")
    _, built = ready_issue(config, essay.slug, report)
    with store.begin() as conn:
        earlier = existing_sends(conn, essay.slug)
        if earlier:
            click.echo(f"'{essay.title}' was already queued as send #{earlier[0][0]} ({earlier[0][1]}); not sending it twice.")
        else:
            send_id = queue(conn, essay.slug, built.subject, built.html, built.text, utcnow())
            click.echo(f"Queued '{essay.title}' as send #{send_id}")
    print_run(Scheduler(store, config, get_provider(config), load_secret(config)).run_once())
    click.echo(f"Look at: {show(config.output_path / 'index.html')} (the web archive), "
               f"{show(config.output_path / essay.slug / 'email.html')} (the email)")
    if config.provider == "outbox":
        click.echo(f"         {show(config.outbox_path)}/send-*/ (one .eml per subscriber: open one in your mail app)")
