"""`nilemetrics watch`: the terminal dashboard."""

from __future__ import annotations

from typing import Annotated

import typer

from nilemetrics.cli.options import build_settings, fail
from nilemetrics.config import read_stored_token


def watch(
    url: Annotated[
        str,
        typer.Option(
            envvar="NILEMETRICS_URL",
            help="Address of the nilemetrics server.",
        ),
    ] = "http://127.0.0.1:8000",
    token: Annotated[
        str | None,
        typer.Option(
            envvar="NILEMETRICS_DASHBOARD_TOKEN",
            help="Dashboard token. Default: the token a server on this machine stored in "
            "your config directory.",
            show_default=False,
        ),
    ] = None,
    alert_errors_per_min: Annotated[
        float,
        typer.Option(
            min=0,
            help="Payment errors per minute above which the dashboard alerts (red line, bell).",
        ),
    ] = 5.0,
) -> None:
    """Open the live dashboard: visitors per page, the checkout funnel, payment errors.

    Example: nilemetrics watch --url http://shop-metrics:8000
    """
    from nilemetrics.tui.feed import websocket_url

    try:
        websocket_url(url)
    except ValueError as exc:
        fail(f"invalid --url: {exc}")
    # Several comma-separated server tokens may be configured; any one of them works.
    chosen = (token or "").split(",")[0].strip() or read_stored_token(
        build_settings().config_dir  # honours NILEMETRICS_CONFIG_DIR, as `serve` does
    )
    from nilemetrics.tui.app import run_dashboard

    run_dashboard(url, chosen, alert_errors_per_min)
