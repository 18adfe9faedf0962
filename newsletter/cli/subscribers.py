"""newsletter subscribers …: the list."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .common import cli, open_store, progress_bar, settings

if TYPE_CHECKING:
    from ..store.subscribers import Subscriber

STATUS_CHOICE = click.Choice(["active", "pending", "unsubscribed", "bounced", "complained", "all"])


def _statuses(chosen: tuple[str, ...] | str) -> tuple[str, ...]:
    from ..store.schema import STATUSES

    chosen = (chosen,) if isinstance(chosen, str) else chosen
    return STATUSES if not chosen or "all" in chosen else tuple(chosen)


@cli.group()
def subscribers() -> None:
    """Manage the list: import, export, add, remove, show, list and count.

    Unsubscribed, bounced and complained addresses are suppressions: they are
    kept and never made active again by an import or an add.

    \b
    Examples:
      newsletter subscribers import readers.csv --dry-run
      newsletter subscribers list --status all --json
    """


@subscribers.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check the file and show what would change, changing nothing.")
def import_(file: Path, dry_run: bool) -> None:
    """Import subscribers from a CSV FILE.

    The header must name an email column (email, e-mail, E-mail Address,
    mail… in any case); a name column and any other columns are kept too.
    UTF-8 with or without a BOM; comma, semicolon, tab or pipe delimited.
    Bad rows are reported with their line and skipped; good rows are kept.

    A file made by `export` imports back as it was: status, source, times,
    status history and consent records included. A row that says unsubscribed, bounced or complained suppresses
    its address; no row makes a suppressed address active again.

    \b
    Examples:
      newsletter subscribers import subscribers/sample.csv --dry-run
      newsletter subscribers import old-list.csv
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from ..store.csvio import import_csv

    store = open_store(settings())
    with progress_bar("Importing", threshold=1_000_000) as update:  # progress is in bytes read
        report = import_csv(store, file, dry_run=dry_run, progress=update)
    console = Console()
    lines = [(bad.row, f"[red]row {bad.row}[/red]: {escape(repr(bad.value))}: {escape(bad.reason)}") for bad in report.invalid]
    lines += [(note.row, f"[yellow]row {note.row}[/yellow]: {escape(note.reason)}")  # no address: the row number finds it
              for note in (*report.merged, *report.cleaned, *report.renumbered)]
    for _, line in sorted(lines, key=lambda pair: pair[0]):
        console.print(line, highlight=False, soft_wrap=True)
    table = Table(title=f"{escape(file.name)}{' (dry run: nothing changed)' if dry_run else ''}")
    columns = {
        "added": report.added, "suppressions recorded": report.suppressions, "updated": report.updated,
        "unchanged": report.unchanged, "suppressed (skipped)": report.suppressed, "merged": len(report.merged),
        "invalid": len(report.invalid),
    }
    for column in columns:
        table.add_column(column, justify="right")
    table.add_row(*(str(n) for n in columns.values()))
    console.print(table)


@subscribers.command("export")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--status", "statuses", type=STATUS_CHOICE, multiple=True, help="Only these statuses (repeatable); all by default.")
@click.option("--excel", is_flag=True, help="Start the file with a UTF-8 byte order mark, so spreadsheet programs read it as UTF-8.")
def export(file: Path, statuses: tuple[str, ...], excel: bool) -> None:
    """Export subscribers to a CSV FILE that is safe to open in a spreadsheet.

    Every subscriber's status, name, attributes, source and times (UTC) are
    written, with their status history and consent records, so the file
    imports back into another store as it was: this is how a list moves to
    another database, suppressions included.

    \b
    Examples:
      newsletter subscribers export list.csv
      newsletter subscribers export active.csv --status active --excel
    """
    from ..store.csvexport import export_csv

    count = export_csv(open_store(settings()), file, _statuses(statuses), excel=excel)
    click.echo(f"Exported {count} subscriber(s) to {file}")


@subscribers.command("add")
@click.argument("email")
@click.option("--name", default="", help="The subscriber's name.")
@click.option("--resubscribe", is_flag=True, help="The subscriber asked, themselves, to receive the newsletter again.")
@click.option("--confirm", "confirm", is_flag=True,
              help="Send a confirmation email instead: EMAIL is subscribed only once its owner confirms.")
def add(email: str, name: str, resubscribe: bool, confirm: bool) -> None:
    """Add EMAIL as an active subscriber.

    The address is stored in its normalised form; a suppressed address stays
    suppressed unless the subscriber asked themselves (--resubscribe). With
    --confirm, EMAIL gets the signup form's confirmation email at once, through
    the configured provider, and becomes active when its owner presses the
    button (an address already active gets a note that it is).

    \b
    Examples:
      newsletter subscribers add ada@example.com --name "Ada Lovelace"
      newsletter subscribers add grace@example.org --confirm
    """
    from ..store import subscribers as ops

    config = settings()
    store = open_store(config)
    if confirm:
        from ..signup import Outcome, signup_for_editor
        from ..tokens import load_secret

        outcome = signup_for_editor(config, store, load_secret(config), email, name)
        if outcome == Outcome.NOT_SENT:
            raise click.ClickException(f"the email to {email.strip()} could not be sent through the "
                                       f"{config.provider} provider; see the log above, then try again")
        click.echo(f"{email.strip()}: {outcome}")
        return
    from ..store.fields import NAME_MAX, clean_text

    _, name_changed = clean_text(name, "name", NAME_MAX)  # a bad name is a NewsletterError: one line, exit 1
    with store.begin() as conn:  # so is a bad address
        if resubscribe:
            subscriber = ops.resubscribe(conn, email, "re-subscribed at the subscriber's request")
            click.echo(f"{subscriber.email} is active again")
            return
        subscriber, added = ops.add(conn, email, name)
    if added:
        click.echo(f"Added {subscriber.email}" + (f" as {subscriber.name!r}: line breaks in the name were made spaces"
                                                  if name_changed else ""))
    elif ops.is_suppressed(subscriber.status):
        raise click.ClickException(
            f"{subscriber.email} is {subscriber.status} and stays so; only the subscriber's own request "
            "may reactivate it (then use --resubscribe)"
        )
    else:
        click.echo(f"{subscriber.email} is already subscribed")


@subscribers.command("remove")
@click.argument("email")
def remove(email: str) -> None:
    """Unsubscribe EMAIL. The address is kept as a suppression, never deleted,
    so no later import or add can make it active again; an address not on
    the list is kept as a suppression too.

    \b
    Examples:
      newsletter subscribers remove ada@example.com
    """
    from ..store import subscribers as ops

    store = open_store(settings())
    with store.begin() as conn:
        subscriber, before = ops.suppress(conn, email, ops.SubscriberStatus.UNSUBSCRIBED, "removed by the editor")
    if before is None:
        click.echo(f"{subscriber.email} was not on the list; kept as unsubscribed, so no import or add will subscribe it")
    elif before in (ops.SubscriberStatus.ACTIVE, ops.SubscriberStatus.PENDING):  # a pending signup is withdrawn too
        click.echo(f"{subscriber.email} is unsubscribed")
    else:
        click.echo(f"{subscriber.email} was already {before}; left so")


@subscribers.command("show")
@click.argument("email")
def show_(email: str) -> None:
    """Show EMAIL's status, name, attributes and every status change, with when
    and where it came from (import file, command, unsubscribe link, webhook event).

    \b
    Examples:
      newsletter subscribers show ada@example.com
    """
    from ..store import subscribers as ops

    with open_store(settings()).engine.connect() as conn:
        subscriber = ops.find(conn, email)
        if subscriber is None:
            raise click.ClickException(f"{email.strip()} is not on the list")
        changes = ops.history(conn, subscriber.id)
        from ..store.signups import consents

        agreed = consents(conn, subscriber.id)
    click.echo(subscriber.email)
    click.echo(f"  status:  {subscriber.status} since {_when(subscriber.status_changed_at)} ({subscriber.source})")
    click.echo(f"  name:    {subscriber.name}")
    click.echo(f"  added:   {_when(subscriber.created_at)}")
    for key, value in subscriber.attributes.items():
        click.echo(f"  {key}: {value}")
    click.echo("  history:")
    for change in changes:
        click.echo(f"    {_when(change.at)}  {change.status:<12}  {change.source}")
    if agreed:
        click.echo("  consent:")
    for record in agreed:
        click.echo(f"    confirmed {_when(record.confirmed_at)} from network {record.confirmed_ip}; "
                   f"asked {_when(record.requested_at)} on {record.form} from network {record.requested_ip}")


def _when(moment: datetime | None) -> str:
    return moment.isoformat(sep=" ", timespec="seconds") + " UTC" if moment else "?"


@subscribers.command("list")
@click.option("--status", type=STATUS_CHOICE, default="active", show_default=True, help="Which subscribers to list.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of every field, for scripts.")
def list_(status: str, as_json: bool) -> None:
    """List subscribers: address, status and name, one a line, fitted to the
    terminal's width (a long name is cut short with …; --json has it whole).

    \b
    Examples:
      newsletter subscribers list
      newsletter subscribers list --status unsubscribed
      newsletter subscribers list --status pending    # signed up, not yet confirmed
      newsletter subscribers list --status all --json > list.json
    """
    import json
    import shutil

    from ..store import subscribers as ops

    with open_store(settings()).engine.connect() as conn:
        found = list(ops.iter_subscribers(conn, _statuses(status)))
    if as_json:
        click.echo(json.dumps([_as_json(s) for s in found], ensure_ascii=False, indent=1))
        return
    if not found:
        click.echo(f"No {'' if status == 'all' else status + ' '}subscribers.", err=True)
        return
    for line in _fitted(found, shutil.get_terminal_size().columns):
        click.echo(line)


def _as_json(subscriber: Subscriber) -> dict[str, object]:
    import dataclasses

    fields = dataclasses.asdict(subscriber)
    return {key: value.isoformat() + "Z" if isinstance(value, datetime) else value for key, value in fields.items()}


def _fitted(found: list[Subscriber], width: int) -> list[str]:
    """Three columns in `width` terminal cells: the address whole if it can be, the name gets what is left."""
    from rich.cells import cell_len, set_cell_size

    def cut(text: str, cells: int) -> str:
        if cell_len(text) <= cells:
            return set_cell_size(text, cells)
        return set_cell_size(text, max(cells - 1, 0)) + ("…" if cells else "")

    gap = 2
    status_w = max(cell_len("status"), *(cell_len(s.status) for s in found))
    email_w = max(cell_len("email"), *(cell_len(s.email) for s in found))
    email_w = max(min(email_w, width - status_w - 2 * gap - 4), 10)  # the address first; the name 4 cells at least
    name_w = max(width - email_w - status_w - 2 * gap, 0)
    lines = []
    for email, state, name in [("email", "status", "name"), *((s.email, s.status, s.name) for s in found)]:
        line = cut(email, email_w) + " " * gap + cut(state, status_w) + " " * gap + cut(name, name_w)
        lines.append(line.rstrip())
    return lines


@subscribers.command("count")
def count() -> None:
    """How many subscribers have each status.

    \b
    Examples:
      newsletter subscribers count
    """
    from ..store import subscribers as ops

    with open_store(settings()).engine.connect() as conn:
        counts = ops.counts(conn)
    for status, number in counts.items():
        click.echo(f"{status}: {number}")
    click.echo(f"total: {sum(counts.values())}")
