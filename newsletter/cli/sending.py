"""queue, sends, cancel, resolve, test and scheduler: getting an issue to the list."""

from __future__ import annotations

import click

from .common import cli, open_store, print_run, progress_bar, settings, show


@cli.command()
@click.argument("issue")
@click.option("--at", "when", required=True, help="'now', ISO 8601 with an offset (2017-03-06T09:00+00:00), or a local time with --tz.")
@click.option("--tz", "zone", default=None, help="Time zone of a --at time without an offset (default: the 'timezone' setting).")
@click.option("--yes", is_flag=True, help="Do not ask: queue it (a time in the past: to go out now). For scripts and cron.")
@click.option("--again", is_flag=True, help="Queue it even though this issue was already queued or sent.")
@click.option("--force", is_flag=True, help="Queue it even though `newsletter check` finds errors in it.")
def queue(issue: str, when: str, zone: str | None, yes: bool, again: bool, force: bool) -> None:
    """Queue ISSUE to be sent to every active subscriber.

    ISSUE is the essay's slug (its file name without .md); the slug without
    its date prefix works too. The issue is built first and refused if it
    does not build, or if `newsletter check` finds errors in it (unless
    --force). Its email is frozen now: later edits need a new send.

    It shows the issue, the number of recipients and the time (as typed, in
    its zone and in UTC), then asks; --yes answers for scripts. A local time
    that the zone skips or repeats (daylight saving) is refused: give an
    offset. A time in the past asks again, and is queued to go out now.

    \b
    Examples:
      newsletter queue say-what-you-mean --at now
      newsletter queue say-what-you-mean --at "2027-03-06 09:00" --tz Europe/London
      newsletter queue say-what-you-mean --at 2027-03-06T09:00-05:00 --yes
    """
    from ..build import ready_issue
    from ..check import refuse_unless_checked
    from ..send_time import parse_send_time
    from ..sends import active_count
    from ..sends import queue as queue_send
    from ..store.schema import utcnow

    config = settings()
    now = utcnow()
    send_time = parse_send_time(when, zone or config.timezone, now)  # a mistyped time fails before the build
    essay, built = ready_issue(config, issue)
    refuse_unless_checked(config, essay, force=force, say=click.echo)
    at = send_time.utc
    store = open_store(config)
    with store.engine.connect() as conn:
        count = active_count(conn)
    click.echo(f"Issue:      {essay.title} ({essay.slug})")
    click.echo(f"Recipients: {count} active subscriber(s)")
    click.echo(f"Send at:    {send_time.describe()}")
    if send_time.is_past(now):
        click.secho(f"That time is {_ago(now - at)} ago.", fg="yellow")
        _ask("Queue it to go out now instead?", yes)
        at = now
    elif not yes:
        _ask("Queue this send?", yes)
    with store.begin() as conn:
        send_id = queue_send(conn, essay.slug, built.subject, built.html, built.text, at, again=again)
    click.echo(f"Queued as send #{send_id}. `newsletter scheduler --once` sends it when it is due.")


def _ago(delta: object) -> str:
    import datetime as dt

    assert isinstance(delta, dt.timedelta)
    hours = delta.total_seconds() / 3600
    return f"{hours * 60:.0f} minutes" if hours < 1 else f"{hours:.1f} hours" if hours < 48 else f"{hours / 24:.0f} days"


def _ask(question: str, yes: bool) -> None:
    """Go on if the editor says yes (or passed --yes); otherwise stop with exit code 1."""
    import sys

    if yes:
        return
    try:
        if click.confirm(question, default=False):
            return
    except click.Abort:
        if not sys.stdin.isatty():
            raise click.ClickException(
                "queue asks before it queues, and there is no terminal to answer; pass --yes to queue without asking"
            ) from None
    raise click.ClickException("not queued")


@cli.command("sends")
def sends_() -> None:
    """List every send: its issue, time, status and counts."""
    from rich.console import Console
    from rich.table import Table

    from ..sends import summaries

    with open_store(settings()).engine.connect() as conn:
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
    """Cancel SEND. A send in progress stops after its current batch.

    \b
    Examples:
      newsletter cancel 3
    """
    from ..sends import cancel as cancel_send

    with open_store(settings()).begin() as conn:
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
    from ..sends import resolve as resolve_send

    with open_store(settings()).begin() as conn:
        outcome = resolve_send(conn, send_id, resend=resend, mark_sent=mark_sent, send_late=send_late)
    click.echo(f"Send #{send_id}: {outcome}")


@cli.command("test")
@click.argument("issue")
@click.option("--to", "address", required=True, help="Where to send the test copy.")
def test_copy(issue: str, address: str) -> None:
    """Send one copy of ISSUE (a draft too) to ADDRESS now, to check it in a real mail app.

    No send is recorded. The subject starts with [TEST], and the copy's
    unsubscribe link opens a page saying it came from a test copy: it
    unsubscribes nobody.

    \b
    Examples:
      newsletter test say-what-you-mean --to me@example.org
      NEWSLETTER_PROVIDER=smtp newsletter test say-what-you-mean --to me@example.org
    """
    from ..build import ready_issue
    from ..providers import get_provider
    from ..sends import send_test_copy

    config = settings()
    _, built = ready_issue(config, issue, drafts=True)  # a draft may go to the editor, never to the list
    provider = get_provider(config)
    email = send_test_copy(config, provider, built, address)
    where = f" (see {show(config.outbox_path / 'test')})" if provider.name == "outbox" else ""
    click.echo(f"Sent a test copy of '{built.subject}' to {email} through {provider.name}{where}")


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

    \b
    Examples:
      newsletter scheduler --once          # from cron or a systemd timer
      newsletter scheduler --poll 60       # as a long-running service
    """
    import signal

    from ..providers import get_provider
    from ..scheduler import Scheduler
    from ..tokens import load_secret

    config = settings()
    provider = get_provider(config)
    secret = load_secret(config)
    store = open_store(config)
    with progress_bar("Sending") as update:
        runner = Scheduler(store, config, provider, secret, progress=update)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: runner.stop.set())
        if not once:
            click.echo(f"Scheduler {runner.id} running with {provider.name}; Ctrl-C to stop.")
            runner.run_forever(poll, on_report=lambda r: print_run(r) if (r.batches or r.held or r.in_doubt or r.errors) else None)
            click.echo("Scheduler stopped.")
            return
        report = runner.run_once()
    print_run(report)
    if provider.name == "outbox" and report.batches:
        click.echo(f"The messages are in {show(config.outbox_path)}/ (one .eml file per recipient).")
