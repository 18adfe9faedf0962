"""init: start a new newsletter in a folder of its own."""

from __future__ import annotations

from pathlib import Path

import click

from .common import cli, show


@cli.command()
@click.argument("path", type=click.Path(path_type=Path), default=".")
@click.option("--name", "site_name", default="My Newsletter", show_default=True, help="The newsletter's name.")
def init(path: Path, site_name: str) -> None:
    """Start a new newsletter in PATH (made if missing; default: here).

    Writes newsletter.toml (every setting, explained), issues/ with an
    example essay, subscribers/sample.csv and a .gitignore. The packaged
    templates are used until you put your own file of the same name in
    templates/. Nothing that exists is overwritten.

    \b
    Examples:
      newsletter init my-newsletter --name "Notes from the Allotment"
      cd my-newsletter && newsletter preview
    """
    from ..scaffold import create_newsletter

    made = create_newsletter(path, site_name)
    for written in made.written:
        click.echo(f"  wrote {show(written)}")
    go = "" if made.root.resolve() == Path.cwd().resolve() else f"cd {show(made.root)}\n  "
    click.echo(
        f"\nA new newsletter is in {show(made.root)}. Next:\n"
        f"  {go}edit newsletter.toml (sender, base_url, postal_address)\n"
        f"  newsletter preview                       # write in {show(made.essay.relative_to(made.root))}, see it in the browser\n"
        "  newsletter subscribers import readers.csv\n"
        "  newsletter queue welcome --at now        # then: newsletter scheduler --once"
    )
