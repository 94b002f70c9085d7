"""The `nilemetrics` Typer application."""

from __future__ import annotations

import typer

from nilemetrics import __version__
from nilemetrics.cli.db import init_db
from nilemetrics.cli.serve import serve
from nilemetrics.cli.watch import watch

app = typer.Typer(
    name="nilemetrics",
    help="Live customer-activity tracking for online shops.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("serve")(serve)
app.command("init-db")(init_db)
app.command("watch")(watch)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nilemetrics {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Live customer-activity tracking for online shops."""


def main() -> None:
    """Entry point of the `nilemetrics` script and `python -m nilemetrics`."""
    app()
