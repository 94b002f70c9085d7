"""The `nilemetrics` Typer application."""

from __future__ import annotations

import os
import sys

import typer

from nilemetrics import __version__
from nilemetrics.cli.alerts import app as alerts_app
from nilemetrics.cli.cleanup import cleanup
from nilemetrics.cli.demo import demo
from nilemetrics.cli.export import export
from nilemetrics.cli.forget import forget
from nilemetrics.cli.init_db import init_db
from nilemetrics.cli.options import err_console
from nilemetrics.cli.report import report
from nilemetrics.cli.serve import serve
from nilemetrics.cli.simulate import simulate_command
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
app.command("cleanup")(cleanup)
app.command("forget")(forget)
app.command("export")(export)
app.command("report")(report)
app.command("simulate")(simulate_command)
app.command("demo")(demo)
app.add_typer(alerts_app, name="alerts")


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
    if len(sys.argv) <= 1:
        app()  # no arguments: the overview help
        return
    # Usage errors (unknown option, bad value) as one line, not Typer's framed panel.
    try:
        code = app(prog_name="nilemetrics", standalone_mode=False)
    except typer.TyperException as exc:
        ctx = getattr(exc, "ctx", None)
        hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        err_console.print(
            f"[bold red]error:[/] {exc.format_message()}{hint}", highlight=False, soft_wrap=True
        )
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted", highlight=False)
        sys.exit(1)
    except OSError as exc:
        # Output that cannot be written (`report > /dev/full`, a full disk, a closed
        # pipe) is one line, not a traceback.
        _stdout_failed(exc)
    try:
        sys.stdout.flush()  # what is still buffered fails here, not at interpreter exit
    except OSError as exc:
        _stdout_failed(exc)
    sys.exit(code if isinstance(code, int) else 0)


def _stdout_failed(exc: OSError) -> None:
    # Python flushes stdout again at exit, and would print a second error: point the
    # descriptor at /dev/null first (the recipe of the `signal` module's docs).
    with_stdout = exc.filename is None
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    if isinstance(exc, BrokenPipeError):
        sys.exit(1)  # `nilemetrics report | head`: the reader has what it wanted
    where = "standard output" if with_stdout else str(exc.filename)
    err_console.print(f"[bold red]error:[/] cannot write {where}: {exc.strerror or exc}",
                      highlight=False, soft_wrap=True)
    sys.exit(1)
