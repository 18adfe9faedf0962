"""newsletter subscribers …: the list."""

from __future__ import annotations

from pathlib import Path

import click

from .common import cli, open_store, progress_bar, settings

STATUS_CHOICE = click.Choice(["active", "unsubscribed", "bounced", "complained", "all"])


def _statuses(chosen: tuple[str, ...] | str) -> tuple[str, ...]:
    from ..store.schema import STATUSES

    chosen = (chosen,) if isinstance(chosen, str) else chosen
    return STATUSES if not chosen or "all" in chosen else tuple(chosen)


@cli.group()
def subscribers() -> None:
    """Manage the list: import, export, add, remove, list and count.

    Unsubscribed, bounced and complained addresses are suppressions: they are
    kept and never made active again by an import or an add.
    """


@subscribers.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check the file and show what would change, changing nothing.")
def import_(file: Path, dry_run: bool) -> None:
    """Import subscribers from a CSV FILE.

    The header must name an email column; a name column and any other
    columns are kept too. UTF-8 with or without a BOM; comma, semicolon, tab
    or pipe delimited. Bad rows are reported and skipped; good rows are kept.
    """
    from rich.console import Console
    from rich.table import Table

    from ..store.csvio import import_csv

    store = open_store(settings())
    with progress_bar("Importing", threshold=1_000_000) as update:  # progress is in bytes read
        report = import_csv(store, file, dry_run=dry_run, progress=update)
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
def export(file: Path, statuses: tuple[str, ...]) -> None:
    """Export subscribers to a CSV FILE that is safe to open in a spreadsheet."""
    from ..store.csvio import export_csv

    count = export_csv(open_store(settings()), file, _statuses(statuses))
    click.echo(f"Exported {count} subscriber(s) to {file}")


@subscribers.command("add")
@click.argument("email")
@click.option("--name", default="", help="The subscriber's name.")
@click.option("--resubscribe", is_flag=True, help="The subscriber asked, themselves, to receive the newsletter again.")
def add(email: str, name: str, resubscribe: bool) -> None:
    """Add EMAIL as an active subscriber."""
    from ..store import subscribers as ops

    store = open_store(settings())
    with store.begin() as conn:
        if resubscribe:
            subscriber = ops.resubscribe(conn, email, "re-subscribed at the subscriber's request")
            click.echo(f"{subscriber.email} is active again")
            return
        subscriber, added = ops.add(conn, email, name)
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
def remove(email: str) -> None:
    """Unsubscribe EMAIL. The address is kept as a suppression, never deleted,
    so no later import can add it again."""
    from ..store import subscribers as ops

    store = open_store(settings())
    with store.begin() as conn:
        subscriber = ops.unsubscribe(conn, email, "removed by the editor")
    click.echo(f"{subscriber.email} is {subscriber.status}")


@subscribers.command("list")
@click.option("--status", type=STATUS_CHOICE, default="active", show_default=True, help="Which subscribers to list.")
def list_(status: str) -> None:
    """Print one subscriber a line: address, status, name."""
    from ..store import subscribers as ops

    with open_store(settings()).engine.connect() as conn:
        for subscriber in ops.iter_subscribers(conn, _statuses(status)):
            click.echo(f"{subscriber.email}\t{subscriber.status}\t{subscriber.name}")


@subscribers.command("count")
def count() -> None:
    """How many subscribers have each status."""
    from ..store import subscribers as ops

    with open_store(settings()).engine.connect() as conn:
        counts = ops.counts(conn)
    for status, number in counts.items():
        click.echo(f"{status}: {number}")
    click.echo(f"total: {sum(counts.values())}")
