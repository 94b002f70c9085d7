"""`nilemetrics demo`: server, simulated shoppers and dashboard, all in one command."""

from __future__ import annotations

import importlib
from typing import Annotated, cast

import typer

from nilemetrics.cli.options import err_console, fail, out_console, seconds
from nilemetrics.cli.signals import stop_on_signals
from nilemetrics.cli.simulate import summary_table
from nilemetrics.demo.runner import Dashboard, DemoError, DemoPlan, run_demo
from nilemetrics.demo.shoppers import MAX_DURATION


def load_dashboard() -> Dashboard:
    """``nilemetrics.tui.app.run_dashboard``, or a one-line error if it is not there."""
    try:
        module = importlib.import_module("nilemetrics.tui.app")
    except ImportError as exc:
        fail(f"the dashboard cannot be loaded ({exc}); run with --no-dashboard")
    runner = getattr(module, "run_dashboard", None)
    if not callable(runner):
        fail("nilemetrics.tui.app has no run_dashboard(); run with --no-dashboard")
    return cast(Dashboard, runner)


def demo(
    shoppers: Annotated[
        int, typer.Option(help="Simulated shoppers (0: only you, in the demo shop).",
                          min=0, max=500)
    ] = 30,
    speed: Annotated[
        float, typer.Option(help="Time compression of the shoppers' behaviour.", min=0.1,
                            max=100)
    ] = 5.0,
    error_rate: Annotated[
        float, typer.Option(help="Share of payment attempts declined.", min=0, max=1)
    ] = 0.15,
    duration: Annotated[
        str | None,
        typer.Option(help="Shoppers stop after this long; without the dashboard the demo "
                     "ends then too (default: run until you quit).", show_default=False),
    ] = None,
    no_dashboard: Annotated[
        bool,
        typer.Option("--no-dashboard",
                     help="No terminal UI: print a live summary line every second instead."),
    ] = False,
    seed: Annotated[int | None, typer.Option(help="Random seed.", show_default=False)] = None,
    shop_port: Annotated[
        int | None,
        typer.Option(help="Port of the demo shop (default 8001, or a free one if taken; "
                     "0: any free port).", min=0, max=65535, show_default=False),
    ] = None,
    no_shop: Annotated[
        bool, typer.Option("--no-shop", help="Do not serve the demo shop.")
    ] = False,
) -> None:
    """Show the product alive: a throw-away SQLite database, the server, shoppers, the dashboard.

    A demo shop (http://127.0.0.1:8001) that uses the tracker script is served
    too: click through it in a browser, fail a payment, and watch the dashboard
    react. Press q (dashboard) or Ctrl-C to stop; everything stops and the
    temporary database is removed.

    Example: nilemetrics demo
    Example: nilemetrics demo --shoppers 0            # only you, in the demo shop
    Example: nilemetrics demo --no-dashboard --duration 30s
    """
    run_for = seconds(duration, "--duration") if duration else None
    if run_for is not None and not 0 < run_for <= MAX_DURATION:
        fail("--duration: must be longer than zero and at most 24h")
    dashboard = None if no_dashboard else load_dashboard()
    plan = DemoPlan(
        shoppers=shoppers, speed=speed, error_rate=error_rate, run_for=run_for, seed=seed,
        shop_port=shop_port, serve_shop=not no_shop,
    )
    # SIGTERM / SIGHUP stop the demo like Ctrl-C (the dashboard quits like `q`), so
    # the server and shoppers are stopped and the database removed either way.
    try:
        with stop_on_signals():
            stats = run_demo(
                plan,
                dashboard=dashboard,
                status=lambda line: err_console.print(line, highlight=False),
                output=out_console.print,
            )
    except DemoError as exc:
        fail(str(exc))
    out_console.print(summary_table(stats.summary(), title="Demo summary"))
