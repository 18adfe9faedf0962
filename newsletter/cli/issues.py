"""build, check, and demo: the whole job on the sample newsletter."""

from __future__ import annotations

import sys

import click

from .common import cli, open_store, print_problems, print_run, run_build, settings, show, warn_before_build


@cli.command()
def build() -> None:
    """Compile every essay in issues/ into build/.

    Each issue gets build/<slug>/email.html (CSS inlined, for mail clients),
    email.txt (the plain-text part) and index.html (the web version); the
    build also writes build/index.html (the archive) and build/feed.xml.
    Only essays and templates that changed are rendered again. A bad essay is
    reported with its file and line, the others still build, and the exit
    code is 1.

    \b
    Examples:
      newsletter build
      NEWSLETTER_BASE_URL=https://news.example.org newsletter build
    """
    from ..freshness import record, unchanged_issues  # light: the renderer is imported only if needed

    config = settings()
    unchanged = unchanged_issues(config)
    if unchanged is not None:
        warn_before_build(config)
        click.echo(f"Built 0 issue(s), {unchanged} unchanged. Open {show(config.output_path / 'index.html')}")
        return
    report = run_build(config)
    if not report.ok:
        sys.exit(1)
    record(config, len(report.built) + len(report.unchanged))


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
    """The whole job on this newsletter: build the issues, import
    subscribers/sample.csv, queue the newest issue for now, send it through
    the provider (the outbox unless configured otherwise), then show where
    the results are and what to do next. Run it again and it sends nothing twice.

    \b
    Examples:
      newsletter demo
      NEWSLETTER_PROVIDER=smtp NEWSLETTER_SMTP_URL=smtp://127.0.0.1:1025 newsletter demo
    """
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
            send_id = earlier[0][0]
            click.echo(f"'{essay.title}' was already queued as send #{send_id} ({earlier[0][1]}); not sending it twice.")
        else:
            send_id = queue(conn, essay.slug, built.subject, built.html, built.text, utcnow())
            click.echo(f"Queued '{essay.title}' as send #{send_id}")
    print_run(Scheduler(store, config, get_provider(config), load_secret(config)).run_once())
    click.echo("\nWhat to look at, and what to do next:")
    if config.provider == "outbox":
        click.echo(f"  {show(config.outbox_path / f'send-{send_id}')}/  one .eml file per subscriber: open one in your mail app")
    click.echo(f"  {show(config.output_path / essay.slug / 'email.html')}  the email; "
               f"{show(config.output_path / 'index.html')}  the web archive")
    click.echo("  newsletter preview   every issue in the browser at desktop and phone width, reloading as you write")
    click.echo(f"  newsletter serve     the public site at {config.base_url}: archive, feed and the unsubscribe links")
    click.echo("  newsletter init PATH start a newsletter of your own (see the README)")
