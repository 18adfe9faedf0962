"""What every command shares: the group, settings, the store, progress bars."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..config import Settings, load_settings
from ..errors import NewsletterError

if TYPE_CHECKING:
    from ..build import BuildReport
    from ..check import CheckReport
    from ..scheduler import RunReport
    from ..store import Store

# Above this many steps a progress bar is worth drawing.
PROGRESS_THRESHOLD = 20


class Group(click.Group):
    """Shows a NewsletterError, or a database that failed, as a one-line message and
    exit code 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            raise click.ClickException(str(exc)) from None
        except Exception as exc:
            if type(exc).__module__.startswith("sqlalchemy."):  # not imported here: `--help` stays quick
                from ..store.db import describe_failure

                raise click.ClickException(f"the database failed: {describe_failure(exc)}") from None
            raise


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
    environment as NEWSLETTER_<KEY>. Run a command in the newsletter's folder
    (or below it); `init` makes a new one.

    \b
    Examples:
      newsletter init my-newsletter && cd my-newsletter
      newsletter preview
      newsletter subscribers import readers.csv
      newsletter queue welcome --at "2027-03-06 09:00" --tz Europe/London
      newsletter scheduler --once
    """


def settings() -> Settings:
    """The newsletter's settings, found from the working folder; NotANewsletter outside one.

    Every command that needs a newsletter starts here, before it touches any file.
    """
    config = load_settings()
    for warning in config.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    return config


def open_store(settings: Settings) -> Store:
    """The store, closed when the command ends."""
    from sqlalchemy.exc import OperationalError

    from ..store import open_store as open_
    from ..store.db import describe_failure

    try:
        store = open_(settings)
    except OperationalError as exc:
        raise click.ClickException(f"cannot open the database: {describe_failure(exc)}") from None
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

            rate = TextColumn("{task.fields[rate]}")
            state["bar"] = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), rate,
                                    TimeRemainingColumn(), transient=True)
            state["bar"].start()
            state["task"] = state["bar"].add_task(label, total=total, rate="")
        speed = state["bar"].tasks[0].speed
        state["bar"].update(state["task"], completed=done, total=total, rate=f"{speed:,.0f}/s" if speed else "")

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


def run_build(settings: Settings, *, drafts: bool = False) -> BuildReport:
    """Build with a progress bar (drafts too, into the preview's folder, with `drafts`),
    print the errors, the warnings and a one-line summary."""
    from ..build import build, preview_output

    warn_before_build(settings)
    with progress_bar("Building issues") as update:
        report = build(settings, progress=update, drafts=drafts)
    for error in report.errors:
        click.secho(f"error: {error}", fg="red", err=True)
    for warning in report.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    click.echo(
        f"Built {len(report.built)} issue(s), {len(report.unchanged)} unchanged"
        + (f", {len(report.removed)} removed" if report.removed else "")
        + (f", {len(report.errors)} failed" if report.errors else "")
        + (f"; {len(report.drafts)} draft(s) left out (see them with newsletter preview)" if report.drafts and not drafts else "")
        + f". Open {show((preview_output(settings) if drafts else settings.output_path) / 'index.html')}"
    )
    return report


def warn_before_build(settings: Settings) -> None:
    if not settings.postal_address.strip():
        click.secho("warning: 'postal_address' is empty; anti-spam laws (CAN-SPAM) ask for a postal address "
                    f"in every email's footer: set it in {show(settings.root / 'newsletter.toml')}", fg="yellow", err=True)


_IN_BATCH = re.compile(r"send #(\d+) batch (\d+): (.*)", re.DOTALL)


_COUNTED = re.compile(r"(\d+) (delivery\(ies\) .*)", re.DOTALL)


def grouped(lines: list[str]) -> list[str]:
    """One line per send and cause: the same refusal of several batches (every
    worker meeting a full disk, a retried batch) is said once, naming them all."""
    batches: dict[tuple[str, str], list[int]] = {}
    out: dict[tuple[str, str], None] = {}
    for line in lines:
        found = _IN_BATCH.fullmatch(line)
        key = (found[1], found[3]) if found else ("", line)
        if found:
            batches.setdefault(key, []).append(int(found[2]))
        out[key] = None
    said = []
    for send, text in out:
        if not send:
            said.append(text)
            continue
        numbers = batches[(send, text)]
        distinct = sorted(set(numbers))
        where = f"batch {distinct[0]}" if len(distinct) == 1 else f"batches {', '.join(map(str, distinct))}"
        times = f" ({len(numbers)} times)" if len(numbers) > len(distinct) else ""
        line = text
        if (counted := _COUNTED.match(text)) and len(numbers) > 1:  # "1 delivery(ies) in doubt" in each: say the sum
            line, times = f"{int(counted[1]) * len(numbers)} {counted[2]}", ""
        said.append(f"send #{send} {where}{times}: {line}")
    return said


def print_run(report: RunReport) -> None:
    """What one scheduler run did, with anything that needs the editor first. No addresses:
    `newsletter sends SEND` names who missed out."""
    for line in report.held:
        click.secho(f"held: {line}", fg="yellow", err=True)
    for line in grouped(report.in_doubt):
        click.secho(f"in doubt: {line}", fg="yellow", err=True)
    for line in grouped(report.errors):
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


def print_problems(report: CheckReport) -> None:
    """Each problem the check found, then a one-line count."""
    for problem in report.problems:
        click.secho(str(problem), fg="red" if problem.severity == "error" else "yellow", err=True)
    click.echo(f"Checked {len(report.checked)} issue(s): {len(report.errors)} error(s), {len(report.warnings)} warning(s).")
