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


def _show(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def main() -> None:
    cli(prog_name="newsletter")


if __name__ == "__main__":
    main()
