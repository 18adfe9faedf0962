"""queue, sends, cancel, resolve, test and scheduler: getting an issue to the list."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..statuses import NEEDS_EDITOR, DeliveryStatus, SendStatus

from .common import cli, open_store, print_run, progress_bar, settings, show

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from ..store.sends import Missed, Progress, SendSummary


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
@click.argument("send_id", metavar="[SEND]", type=int, required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table.")
@click.option("--export", "export_to", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With SEND: write every recipient who did not get it (failed, deferred, in doubt, skipped) to this CSV file.")
def sends_(send_id: int | None, as_json: bool, export_to: Path | None) -> None:
    """List every send with its status and counts per outcome, or show SEND in detail:
    its counts and every failed, deferred or in-doubt recipient with the reason.

    A send under way also shows how much is done, how many went out over the
    last minute and the time left at that pace. It is read from the database,
    so it works from any machine that shares it with the schedulers.

    \b
    Examples:
      newsletter sends
      newsletter sends --json
      newsletter sends 3
      newsletter sends 3 --export missed.csv
    """
    from ..sends import summaries

    if export_to is not None and send_id is None:
        raise click.UsageError("--export needs a SEND: newsletter sends 3 --export missed.csv")
    with open_store(settings()).engine.connect() as conn:
        if send_id is not None:
            _send_detail(conn, send_id, as_json, export_to)
            return
        found = summaries(conn)
    if as_json:
        click.echo(json.dumps([_summary_json(s) for s in found], indent=2))
        return
    if not found:
        click.echo("No sends yet. Queue one with `newsletter queue ISSUE --at now`.")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(expand=False)
    table.add_column("send", no_wrap=True)
    table.add_column("issue", overflow="fold", ratio=3)
    table.add_column("scheduled (UTC)", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("recipients", overflow="fold", ratio=2)
    table.add_column("needs the editor", overflow="fold", ratio=4)
    for send in found:
        outcomes = ", ".join(f"{s.value.replace('_', ' ')} {send.count(s)}" for s in SHOWN if send.count(s))
        status = f"{send.status} {_share(send.progress)}" if send.progress else send.status
        table.add_row(f"#{send.id}", send.issue_slug, f"{send.scheduled_at:%Y-%m-%d %H:%M}", status,
                      outcomes or "none", _trouble(send))
    Console().print(table)  # as wide as the terminal, no wider
    for send in found:
        if send.progress:
            click.echo(f"#{send.id} under way: {_describe(send.progress)}")


def _share(progress: Progress) -> str:
    if not progress.total:
        return "100%"
    return f"{progress.done * 100 // progress.total}%"  # rounded down: 100% only when all are done


def _describe(progress: Progress) -> str:
    """45% done (450 of 1,000), 120 sent a minute, about 5 min left."""
    pace = f"{progress.per_minute:,.0f} sent a minute" if progress.per_minute else "none sent in the last minute"
    left = progress.seconds_left
    when = "" if left is None else ", none left to try now" if not progress.untried else f", {_duration(left)} left"
    return f"{_share(progress)} done ({progress.done:,} of {progress.total:,}), {pace}{when}"


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return "under a minute"
    return f"about {minutes} min" if minutes < 90 else f"about {minutes // 60} h {minutes % 60} min"


SHOWN = (DeliveryStatus.SENT, DeliveryStatus.PENDING, DeliveryStatus.DEFERRED, DeliveryStatus.FAILED, DeliveryStatus.IN_DOUBT,
         DeliveryStatus.SKIPPED)


def _trouble(send: SendSummary) -> str:
    trouble = []
    if send.count(DeliveryStatus.IN_DOUBT):
        trouble.append(f"in doubt: resolve {send.id} --resend | --mark-sent")
    if send.count(DeliveryStatus.FAILED):
        trouble.append(f"failed: see `sends {send.id}`; resolve {send.id} --retry-failed")
    if send.status == SendStatus.HELD:
        trouble.append(send.note)
    return "; ".join(trouble)


def _summary_json(send: SendSummary) -> dict[str, object]:
    progress = send.progress
    return {"id": send.id, "issue": send.issue_slug, "subject": send.subject, "status": send.status,
            "scheduled_at": send.scheduled_at.isoformat(timespec="seconds") + "Z", "note": send.note,
            "counts": {status.value: send.count(status) for status in DeliveryStatus},
            "progress": None if progress is None else {
                "done": progress.done, "total": progress.total, "sent_per_minute": round(progress.per_minute, 1),
                "seconds_left": None if progress.seconds_left is None else round(progress.seconds_left)}}


def _send_detail(conn: Connection, send_id: int, as_json: bool, export_to: Path | None) -> None:
    from ..sends import missed, summary

    send = summary(conn, send_id)
    if export_to is not None:
        count = _export_missed(missed(conn, send_id, (*NEEDS_EDITOR, DeliveryStatus.SKIPPED)), export_to)
        click.echo(f"Wrote {count} recipient(s) of send #{send_id} who did not get it to {show(export_to)}")
        return
    people = list(missed(conn, send_id))
    if as_json:
        click.echo(json.dumps({**_summary_json(send), "missed": [
            {"email": m.email, "name": m.name, "outcome": m.status, "reason": m.reason, "attempts": m.attempts,
             "next_attempt_at": m.next_attempt_at.isoformat(timespec="seconds") + "Z" if m.next_attempt_at else None}
            for m in people]}, indent=2))
        return
    click.echo(f"Send #{send.id}: {send.issue_slug} ({send.status}), scheduled {send.scheduled_at:%Y-%m-%d %H:%M} UTC")
    click.echo(f"Subject: {send.subject}")
    if send.note:
        click.echo(f"Note: {send.note}")
    click.echo(f"Recipients: {send.recipients}; " + ", ".join(f"{s.value.replace('_', ' ')} {send.count(s)}" for s in SHOWN))
    if send.progress:
        click.echo(f"Progress: {_describe(send.progress)}")
    for person in people:
        when = f" (try {person.attempts + 1} at {person.next_attempt_at:%Y-%m-%d %H:%M} UTC)" if person.next_attempt_at else ""
        click.echo(f"  {person.status.replace('_', ' '):9} {person.email}: {person.reason or 'no reason recorded'}{when}")
    trouble = _trouble(send)
    if trouble:
        click.echo(f"Next: {trouble}")


def _export_missed(people: Iterable[Missed], path: Path) -> int:
    from ..store.csvexport import neutralise

    count = 0
    try:
        handle = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise click.ClickException(f"cannot write {path} ({exc.strerror}); choose a file in a folder you may write to") from None
    with handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name", "outcome", "reason", "attempts", "next_attempt_at"])
        for person in people:
            when = person.next_attempt_at.isoformat(timespec="seconds") if person.next_attempt_at else ""
            writer.writerow([neutralise(v) for v in (person.email, person.name, person.status, person.reason, str(person.attempts), when)])
            count += 1
    return count


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
    click.echo(f"Send #{send_id} cancelled" + (" (it stops after the batch being sent now)" if was == SendStatus.SENDING else ""))


@cli.command()
@click.argument("send_id", metavar="SEND", type=int)
@click.option("--resend", is_flag=True, help="Send the in-doubt deliveries again (some readers may get two copies).")
@click.option("--mark-sent", is_flag=True, help="Count the in-doubt deliveries as delivered; failed ones stay failed.")
@click.option("--retry-failed", is_flag=True, help="Send the failed deliveries once more, once their cause is fixed.")
@click.option("--send-late", is_flag=True, help="Send a held send after all (overdue, or stopped by an error now fixed).")
def resolve(send_id: int, resend: bool, mark_sent: bool, retry_failed: bool, send_late: bool) -> None:
    """Decide what happens to SEND where the scheduler will not decide alone:
    deliveries in doubt after a crash, failed deliveries, or a held send.

    \b
    Examples:
      newsletter sends 3                  # who is in doubt or failed, and why
      newsletter resolve 3 --resend       # the in-doubt ones get it (again, perhaps)
      newsletter resolve 3 --mark-sent    # the in-doubt ones count as delivered
      newsletter resolve 3 --retry-failed # after fixing what made the server refuse them
    """
    from ..sends import resolve as resolve_send

    with open_store(settings()).begin() as conn:
        outcome = resolve_send(conn, send_id, resend=resend, mark_sent=mark_sent, retry_failed=retry_failed, send_late=send_late)
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
    batches (or sooner, while it waits for max_per_second or max_per_hour). Each recipient gets one copy: a crash, a retry or a second
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
