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


def _show(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def main() -> None:
    cli(prog_name="newsletter")


if __name__ == "__main__":
    main()
