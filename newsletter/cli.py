"""The `newsletter` command: a thin layer over the library.

Each command reads the settings, calls one library function and reports what
happened. Heavy modules are imported inside commands so `--help` stays quick.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click

from .config import ConfigError, Settings, load_settings

# Above this many steps a progress bar is worth drawing.
PROGRESS_THRESHOLD = 20


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@contextlib.contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A callback(done, total) that draws a rich progress bar once the work is large."""
    state: dict[str, object] = {}

    def update(done: int, total: int) -> None:
        if total < PROGRESS_THRESHOLD:
            return
        if "bar" not in state:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                transient=True,
            )
            bar.start()
            state["bar"] = bar
            state["task"] = bar.add_task(label, total=total)
        bar = state["bar"]
        bar.update(state["task"], completed=done, total=total)  # type: ignore[union-attr]

    try:
        yield update
    finally:
        if "bar" in state:
            state["bar"].stop()  # type: ignore[union-attr]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="newsletter")
def cli() -> None:
    """Publish a newsletter from a folder of essays.

    Essays are Markdown files in issues/. `build` turns them into responsive
    email, `subscribers` manages the list, `queue` and `scheduler` send an
    issue to every active subscriber exactly once, and `preview` shows every
    issue in the browser while you write.

    Settings live in newsletter.toml; any key can be overridden from the
    environment as NEWSLETTER_<KEY>.
    """


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
    report = run_build(_settings())
    if not report.ok:
        sys.exit(1)


def run_build(settings: Settings):  # noqa: ANN201 - returns build.BuildReport
    from .build import build as build_all

    with progress_bar("Building issues") as update:
        report = build_all(settings, progress=update)
    for error in report.errors:
        click.secho(f"error: {error}", fg="red", err=True)
    out = settings.output_path
    click.echo(
        f"Built {len(report.built)} issue(s), {len(report.unchanged)} unchanged"
        + (f", {len(report.removed)} removed" if report.removed else "")
        + (f", {len(report.errors)} failed" if report.errors else "")
        + f". Open {_show(out / 'index.html')}"
    )
    return report


def _store(settings: Settings):  # noqa: ANN202 - store.Store
    from sqlalchemy.exc import OperationalError

    from .store import open_store

    try:
        store = open_store(settings)
    except OperationalError as exc:
        raise click.ClickException(f"cannot open the database: {exc.orig}") from None
    click.get_current_context().call_on_close(store.dispose)
    return store


STATUS_CHOICE = click.Choice(["active", "unsubscribed", "bounced", "complained", "all"])


@cli.group()
def subscribers() -> None:
    """Manage the list: import, export, add, remove, list and count.

    Unsubscribed, bounced and complained addresses are suppressions: they are
    kept and never made active again by an import or an add.
    """


@subscribers.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check the file and show what would change, changing nothing.")
def subscribers_import(file: Path, dry_run: bool) -> None:
    """Import subscribers from a CSV FILE.

    The header must name an email column; a name column and any other
    columns are kept too. UTF-8 with or without a BOM; comma, semicolon, tab
    or pipe delimited. Bad rows are reported and skipped; good rows are kept.
    """
    from rich.console import Console
    from rich.table import Table

    from .store.csvio import CsvError, import_csv

    settings = _settings()
    store = _store(settings)
    try:
        with progress_bar("Importing") as update:
            report = import_csv(store, file, dry_run=dry_run, progress=lambda done, size: update(done, size))
    except CsvError as exc:
        raise click.ClickException(str(exc)) from None
    console = Console()
    for bad in report.invalid:
        console.print(f"[red]row {bad.row}[/red]: {bad.value!r}: {bad.reason}", highlight=False, soft_wrap=True)
    table = Table(title=f"{file.name}{' (dry run: nothing changed)' if dry_run else ''}")
    for column in ("added", "updated", "unchanged", "suppressed (skipped)", "invalid"):
        table.add_column(column, justify="right")
    table.add_row(*(str(n) for n in (report.added, report.updated, report.unchanged, report.suppressed, len(report.invalid))))
    console.print(table)


@subscribers.command("export")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--status", "statuses", type=STATUS_CHOICE, multiple=True, help="Only these statuses (repeatable); all by default.")
def subscribers_export(file: Path, statuses: tuple[str, ...]) -> None:
    """Export subscribers to a CSV FILE that is safe to open in a spreadsheet."""
    from .store.csvio import export_csv
    from .store.schema import STATUSES

    chosen = STATUSES if not statuses or "all" in statuses else statuses
    count = export_csv(_store(_settings()), file, chosen)
    click.echo(f"Exported {count} subscriber(s) to {file}")


@subscribers.command("add")
@click.argument("email")
@click.option("--name", default="", help="The subscriber's name.")
@click.option("--resubscribe", is_flag=True, help="The subscriber asked, themselves, to receive the newsletter again.")
def subscribers_add(email: str, name: str, resubscribe: bool) -> None:
    """Add EMAIL as an active subscriber."""
    from .store import subscribers as ops

    store = _store(_settings())
    try:
        with store.begin() as conn:
            if resubscribe:
                subscriber = ops.resubscribe(conn, email, "re-subscribed at the subscriber's request")
                click.echo(f"{subscriber.email} is active again")
                return
            subscriber, added = ops.add(conn, email, name)
    except ops.InvalidEmail as exc:
        raise click.ClickException(f"{email!r} is not a valid address: {exc}") from None
    if added:
        click.echo(f"Added {subscriber.email}")
    elif ops.is_suppressed(subscriber.status):
        raise click.ClickException(
            f"{subscriber.email} is {subscriber.status} and stays so; only the subscriber's own request "
            "may reactivate it (then use --resubscribe)"
        )
    else:
        click.echo(f"{subscriber.email} is already subscribed")


@subscribers.command("remove")
@click.argument("email")
def subscribers_remove(email: str) -> None:
    """Unsubscribe EMAIL. The address is kept as a suppression, never deleted,
    so no later import can add it again."""
    from .store import subscribers as ops

    store = _store(_settings())
    try:
        with store.begin() as conn:
            subscriber = ops.unsubscribe(conn, email, "removed by the editor")
    except ops.InvalidEmail as exc:
        raise click.ClickException(f"{email!r} is not a valid address: {exc}") from None
    click.echo(f"{subscriber.email} is {subscriber.status}")


@subscribers.command("list")
@click.option("--status", type=STATUS_CHOICE, default="active", show_default=True, help="Which subscribers to list.")
def subscribers_list(status: str) -> None:
    """Print one subscriber a line: address, status, name."""
    from .store import subscribers as ops
    from .store.schema import STATUSES

    store = _store(_settings())
    with store.engine.connect() as conn:
        for subscriber in ops.iter_subscribers(conn, STATUSES if status == "all" else (status,)):
            click.echo(f"{subscriber.email}\t{subscriber.status}\t{subscriber.name}")


@subscribers.command("count")
def subscribers_count() -> None:
    """How many subscribers have each status."""
    from .store import subscribers as ops

    store = _store(_settings())
    with store.engine.connect() as conn:
        counts = ops.counts(conn)
    for status, number in counts.items():
        click.echo(f"{status}: {number}")
    click.echo(f"total: {sum(counts.values())}")


def _fail_on(*errors: type[Exception]):  # noqa: ANN202
    """Turn the library's own errors into a clean message and exit code 1."""

    @contextlib.contextmanager
    def guard() -> Iterator[None]:
        try:
            yield
        except errors as exc:
            raise click.ClickException(str(exc)) from None

    return guard()


def _library_errors() -> tuple[type[Exception], ...]:
    from .build import IssueNotReady
    from .sends import SendError

    return (ConfigError, IssueNotReady, SendError)


@cli.command()
@click.argument("issue")
@click.option("--at", "when", required=True, help="'now', ISO 8601 with an offset (2017-03-06T09:00+00:00), or a local time with --tz.")
@click.option("--tz", "zone", default=None, help="Time zone of a --at time without an offset (default: the 'timezone' setting).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--again", is_flag=True, help="Queue it even though this issue was already queued or sent.")
def queue(issue: str, when: str, zone: str | None, yes: bool, again: bool) -> None:
    """Queue ISSUE to be sent to every active subscriber.

    ISSUE is the essay's slug (its file name without .md); the slug without
    its date prefix works too. The issue is built first and refused if it
    does not build. Its email is frozen now: later edits need a new send.
    """
    from .build import ready_issue
    from .sends import active_count, parse_when, queue as queue_send

    settings = _settings()
    with _fail_on(*_library_errors()):
        essay, built = ready_issue(settings, issue)
        at = parse_when(when, zone or settings.timezone)
        store = _store(settings)
        with store.engine.connect() as conn:
            count = active_count(conn)
        click.echo(f"Issue:      {essay.title} ({essay.slug})")
        click.echo(f"Recipients: {count} active subscriber(s)")
        click.echo(f"Send at:    {at:%Y-%m-%d %H:%M} UTC")
        if not yes:
            click.confirm("Queue this send?", abort=True)
        with store.begin() as conn:
            send_id = queue_send(conn, essay.slug, built.subject, built.html, built.text, at, again=again)
    click.echo(f"Queued as send #{send_id}. `newsletter scheduler --once` sends it when it is due.")


@cli.command("sends")
def sends_list() -> None:
    """List every send: its issue, time, status and counts."""
    from rich.console import Console
    from rich.table import Table

    from .sends import summaries

    store = _store(_settings())
    with store.engine.connect() as conn:
        found = summaries(conn)
    if not found:
        click.echo("No sends yet. Queue one with `newsletter queue ISSUE --at now`.")
        return
    table = Table()
    for column in ("send", "issue", "scheduled (UTC)", "status", "sent", "pending", "skipped", "failed", "needs the editor"):
        table.add_column(column)
    for send in found:
        trouble = []
        if send.in_doubt:
            trouble.append(f"in doubt: batch {', '.join(map(str, send.in_doubt))} (newsletter resolve {send.id} --resend | --mark-sent)")
        if send.failed:
            trouble.append(f"failed: batch {', '.join(map(str, send.failed))} (newsletter resolve {send.id} --resend)")
        if send.status == "held":
            trouble.append(send.note)
        table.add_row(
            f"#{send.id}", send.issue_slug, f"{send.scheduled_at:%Y-%m-%d %H:%M}", send.status,
            *(str(send.counts.get(k, 0)) for k in ("sent", "pending", "skipped", "failed")), "; ".join(trouble),
        )
    Console(width=200).print(table)


@cli.command()
@click.argument("send_id", metavar="SEND", type=int)
def cancel(send_id: int) -> None:
    """Cancel SEND. A send in progress stops after its current batch."""
    from .sends import cancel as cancel_send

    store = _store(_settings())
    with _fail_on(*_library_errors()), store.begin() as conn:
        was = cancel_send(conn, send_id)
    click.echo(f"Send #{send_id} cancelled" + (" (it stops after the batch being sent now)" if was == "sending" else ""))


@cli.command()
@click.argument("send_id", metavar="SEND", type=int)
@click.option("--resend", is_flag=True, help="Send the in-doubt or failed batches again (some readers may get two copies).")
@click.option("--mark-sent", is_flag=True, help="Count the in-doubt batches as delivered and send them no more.")
@click.option("--send-late", is_flag=True, help="Send a send held as overdue after all.")
def resolve(send_id: int, resend: bool, mark_sent: bool, send_late: bool) -> None:
    """Decide what happens to SEND where the scheduler will not decide alone:
    a batch in doubt after a crash, a failed batch, or an overdue send."""
    from .sends import resolve as resolve_send

    store = _store(_settings())
    with _fail_on(*_library_errors()), store.begin() as conn:
        outcome = resolve_send(conn, send_id, resend=resend, mark_sent=mark_sent, send_late=send_late)
    click.echo(f"Send #{send_id}: {outcome}")


@cli.command("test")
@click.argument("issue")
@click.option("--to", "address", required=True, help="Where to send the test copy.")
def test_send(issue: str, address: str) -> None:
    """Send one copy of ISSUE to ADDRESS now. No send is recorded."""
    from .build import ready_issue
    from .messages import Recipient
    from .providers import DeliveryFailed, OutcomeUnknown, get_provider
    from .store.subscribers import InvalidEmail, email_key
    from .tokens import Signer, load_secret, unsubscribe_url

    settings = _settings()
    with _fail_on(*_library_errors()):
        try:
            email, _ = email_key(address)
        except InvalidEmail as exc:
            raise click.ClickException(f"{address!r} is not a valid address: {exc}") from None
        _, built = ready_issue(settings, issue)
        provider = get_provider(settings)
        link = unsubscribe_url(settings, Signer(load_secret(settings)).token(0, built.slug))
        try:
            provider.send(built, [Recipient(email=email, name="", unsubscribe_url=link)])
        except (DeliveryFailed, OutcomeUnknown) as exc:
            raise click.ClickException(f"the test copy was not sent: {exc}") from None
    where = f" (see {_show(settings.outbox_path / 'test')})" if provider.name == "outbox" else ""
    click.echo(f"Sent a test copy of '{built.subject}' to {email} through {provider.name}{where}")


def _print_run(report, settings: Settings) -> None:  # noqa: ANN001 - scheduler.RunReport
    for line in report.held:
        click.secho(f"held: {line}", fg="yellow", err=True)
    for line in report.in_doubt:
        click.secho(f"in doubt: {line}", fg="yellow", err=True)
    for line in report.errors:
        click.secho(f"failed: {line}", fg="red", err=True)
    click.echo(
        f"Sent {report.sent} message(s) in {report.batches} batch(es); skipped {report.skipped} "
        f"(unsubscribed since queued); refused {report.failed}."
        + (f" Finished send(s): {', '.join(f'#{i}' for i in report.completed)}." if report.completed else "")
    )


@cli.command()
@click.option("--once", is_flag=True, help="Send everything due, then exit (for cron and tests).")
@click.option("--poll", default=30.0, show_default=True, help="Seconds between looks for due sends.")
def scheduler(once: bool, poll: float) -> None:
    """Send due issues to the list through the configured provider.

    Runs until stopped; SIGTERM or Ctrl-C stop it cleanly after the current
    batch. Each recipient gets one copy: a crash, a retry or a second
    scheduler cannot send twice. A batch that may or may not have reached the
    provider when a scheduler died is reported as in doubt for the editor to
    resolve; a send found more than grace_hours late is held until confirmed.
    """
    import signal

    from .providers import get_provider
    from .scheduler import Scheduler
    from .tokens import load_secret

    settings = _settings()
    with _fail_on(ConfigError):
        provider = get_provider(settings)
        secret = load_secret(settings)
    store = _store(settings)
    with progress_bar("Sending") as update:
        runner = Scheduler(store, settings, provider, secret, progress=update)
        stop = lambda *_: runner.stop.set()  # noqa: E731
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        if once:
            report = runner.run_once()
        else:
            click.echo(f"Scheduler {runner.id} running with {provider.name}; Ctrl-C to stop.")
            runner.run_forever(poll, on_report=lambda r: _print_run(r, settings) if (r.batches or r.held or r.in_doubt or r.errors) else None)
            click.echo("Scheduler stopped.")
            return
    _print_run(report, settings)
    if provider.name == "outbox" and report.batches:
        click.echo(f"The messages are in {_show(settings.outbox_path)}/ (one .eml file per recipient).")


@cli.command()
def demo() -> None:
    """The whole job on the embedded defaults: build the sample issues, import
    subscribers/sample.csv, queue the newest issue for now, send it through
    the provider (the outbox unless configured otherwise) and show where to look."""
    from .build import newest_essay, ready_issue
    from .providers import get_provider
    from .scheduler import Scheduler
    from .sends import existing_sends, queue as queue_send
    from .store.csvio import import_csv
    from .tokens import load_secret

    settings = _settings()
    report = run_build(settings)
    essay = newest_essay(report)
    if essay is None:
        raise click.ClickException(f"there is no essay in {settings.issues_path} to send")
    store = _store(settings)
    sample = settings.root / "subscribers" / "sample.csv"
    with _fail_on(*_library_errors()):
        imported = import_csv(store, sample)
        click.echo(f"Imported {sample.name}: {imported.added} added, {imported.unchanged + imported.updated} already there")
        _, built = ready_issue(settings, essay.slug, report)
        with store.begin() as conn:
            earlier = existing_sends(conn, essay.slug)
            if earlier:
                click.echo(f"'{essay.title}' was already queued as send #{earlier[0][0]} ({earlier[0][1]}); not sending it twice.")
            else:
                send_id = queue_send(conn, essay.slug, built.subject, built.html, built.text, _now())
                click.echo(f"Queued '{essay.title}' as send #{send_id}")
        runner = Scheduler(store, settings, get_provider(settings), load_secret(settings))
        _print_run(runner.run_once(), settings)
    click.echo(f"Look at: {_show(settings.output_path / 'index.html')} (the web archive), "
               f"{_show(settings.output_path / essay.slug / 'email.html')} (the email)")
    if settings.provider == "outbox":
        click.echo(f"         {_show(settings.outbox_path)}/send-*/ (one .eml per subscriber: open one in your mail app)")


@cli.command()
@click.option("--port", default=8001, show_default=True, help="Port on 127.0.0.1.")
@click.option("--no-open", is_flag=True, help="Do not open the browser.")
def preview(port: int, no_open: bool) -> None:
    """Preview every issue in the browser while you write.

    Each issue shows at desktop (600 px) and phone (375 px) width, with its
    text part and web version. Saving an essay or a template rebuilds what
    changed and the open page reloads by itself; a broken essay shows its
    error in the page.
    """
    import threading
    import webbrowser

    import uvicorn

    from .web.preview import create_app

    settings = _settings()
    report = run_build(settings)
    url = f"http://127.0.0.1:{port}/"
    click.echo(f"Previewing at {url} (Ctrl-C to stop)")
    if not no_open:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    uvicorn.run(create_app(settings, report), host="127.0.0.1", port=port, log_level="warning",
                timeout_graceful_shutdown=1)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, help="Port to listen on.")
def serve(host: str, port: int) -> None:
    """Run the public app: the web archive and feed from build/, unsubscribe
    links (GET shows a button, POST unsubscribes; RFC 8058 one-click) and
    SendGrid's signed Event Webhook at /webhooks/sendgrid.

    Put it behind your web server at the base_url setting. Webhook calls are
    refused unless SENDGRID_WEBHOOK_PUBLIC_KEY is set.
    """
    import logging

    import uvicorn

    from .tokens import load_secret
    from .web.public import RedactTokens, create_app

    settings = _settings()
    with _fail_on(ConfigError):
        secret = load_secret(settings)
    store = _store(settings)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("uvicorn.access").addFilter(RedactTokens())
    click.echo(f"Serving {settings.site_name} on http://{host}:{port}/")
    uvicorn.run(create_app(settings, store, secret), host=host, port=port, log_level="info")


def _now():  # noqa: ANN202
    from .store.schema import utcnow

    return utcnow()


def _show(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def main() -> None:
    cli(prog_name="newsletter")


if __name__ == "__main__":
    main()
