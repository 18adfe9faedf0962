"""What every command shares: the group, settings, the store, progress bars."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..config import Settings, load_settings
from ..errors import NewsletterError

if TYPE_CHECKING:
    from ..build import BuildReport
    from ..scheduler import RunReport
    from ..store import Store

# Above this many steps a progress bar is worth drawing.
PROGRESS_THRESHOLD = 20


class Group(click.Group):
    """Shows a NewsletterError as a one-line message and exit code 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="newsletter")
def cli() -> None:
    """Publish a newsletter from a folder of essays.

    Essays are Markdown files in issues/. `build` turns them into responsive
    email, `subscribers` manages the list, `queue` and `scheduler` send an
    issue to every active subscriber exactly once, and `preview` shows every
    issue in the browser while you write. `demo` runs the whole job on the
    sample newsletter.

    Settings live in newsletter.toml; any key can be overridden from the
    environment as NEWSLETTER_<KEY>.
    """


def settings() -> Settings:
    return load_settings()


def open_store(settings: Settings) -> Store:
    """The store, closed when the command ends."""
    from sqlalchemy.exc import OperationalError

    from ..store import open_store as open_

    try:
        store = open_(settings)
    except OperationalError as exc:
        raise click.ClickException(f"cannot open the database: {exc.orig}") from None
    click.get_current_context().call_on_close(store.dispose)
    return store


@contextlib.contextmanager
def progress_bar(label: str, threshold: int = PROGRESS_THRESHOLD) -> Iterator[Callable[[int, int], None]]:
    """A callback(done, total) that draws a rich progress bar once the work is large:
    `total` of at least `threshold` (essays, recipients, bytes…)."""
    state: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if total < threshold:
            return
        if "bar" not in state:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            state["bar"] = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                    TimeRemainingColumn(), transient=True)
            state["bar"].start()
            state["task"] = state["bar"].add_task(label, total=total)
        state["bar"].update(state["task"], completed=done, total=total)

    try:
        yield update
    finally:
        if "bar" in state:
            state["bar"].stop()


def show(path: Path) -> str:
    """A path as the user should type it: relative to where they are, when it can be."""
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def run_build(settings: Settings) -> BuildReport:
    """Build with a progress bar, print the errors and a one-line summary."""
    from ..build import build

    with progress_bar("Building issues") as update:
        report = build(settings, progress=update)
    for error in report.errors:
        click.secho(f"error: {error}", fg="red", err=True)
    click.echo(
        f"Built {len(report.built)} issue(s), {len(report.unchanged)} unchanged"
        + (f", {len(report.removed)} removed" if report.removed else "")
        + (f", {len(report.errors)} failed" if report.errors else "")
        + f". Open {show(settings.output_path / 'index.html')}"
    )
    return report


def print_run(report: RunReport) -> None:
    """What one scheduler run did, with anything that needs the editor first. No addresses:
    `newsletter sends SEND` names who missed out."""
    for line in report.held:
        click.secho(f"held: {line}", fg="yellow", err=True)
    for line in report.in_doubt:
        click.secho(f"in doubt: {line}", fg="yellow", err=True)
    for line in report.errors:
        click.secho(f"failed: {line}", fg="red", err=True)
    if report.lease_lost:
        click.secho("stopped: this scheduler's lease ran out (was it paused?); another scheduler may take over its work",
                    fg="yellow", err=True)
    parts = [f"Sent {report.sent} message(s) in {report.batches} batch(es)", f"skipped {report.skipped} (unsubscribed since queued)",
             f"refused {report.failed}"]
    if report.deferred:
        parts.append(f"deferred {report.deferred} (refused for now; tried again later)")
    if report.doubtful:
        parts.append(f"in doubt {report.doubtful}")
    line = "; ".join(parts) + "."
    if report.completed:
        line += f" Finished send(s): {', '.join(f'#{i}' for i in report.completed)}."
    if report.next_retry:
        line += f" Next retry at {report.next_retry:%Y-%m-%d %H:%M:%S} UTC."
    click.echo(line)
    if report.failed or report.doubtful:
        click.echo("See who missed out with `newsletter sends SEND`.")
