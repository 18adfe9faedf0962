"""The `newsletter` command: a thin layer over the library.

Each command reads the settings, calls library functions and reports what
happened. Heavy modules are imported inside commands so `--help` stays quick.
"""

from . import init, issues, sending, subscribers, web  # noqa: F401 - each registers its commands
from .common import cli


def main() -> None:
    cli(prog_name="newsletter")


__all__ = ["cli", "main"]

