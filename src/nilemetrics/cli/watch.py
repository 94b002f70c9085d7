"""`nilemetrics watch`: the terminal dashboard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from nilemetrics.cli.options import build_settings, fail
from nilemetrics.config import read_stored_token
from nilemetrics.durations import parse_duration


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
    at: Annotated[
        str | None,
        typer.Option(
            help='Open in replay at this minute: local time such as "2026-12-01 03:10" '
            "(an ISO offset or Z is honoured), or a duration ago such as 2h. "
            "Esc returns to live.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Open the live dashboard: visitors per page, the checkout funnel, payment errors.

    Number keys switch views: 1 Live, 2 History (charts; Enter replays a minute),
    3 Customer (a person's sessions and journey), 4 Report.

    Example: nilemetrics watch --url http://shop-metrics:8000
    Example: nilemetrics watch --at "2026-12-01 03:10"
    """
    from nilemetrics.tui.feed import websocket_url

    replay_at = replay_time(at, datetime.now(UTC)) if at is not None else None

    try:
        websocket_url(url)
    except ValueError as exc:
        fail(f"invalid --url: {exc}")
    # Several comma-separated server tokens may be configured; any one of them works.
    chosen = (token or "").split(",")[0].strip() or read_stored_token(
        build_settings().config_dir  # honours NILEMETRICS_CONFIG_DIR, as `serve` does
    )
    from nilemetrics.tui.app import run_dashboard

    run_dashboard(url, chosen, alert_errors_per_min, replay_at=replay_at)


def replay_time(value: str, now: datetime) -> datetime:
    """``--at`` as an aware UTC datetime, or a one-line error.

    A time without an offset is local, as every time the dashboard shows.
    """
    try:
        ago = parse_duration(value)
    except ValueError:
        text = value.strip().replace("Z", "+00:00")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            fail(f'--at: invalid time {value!r}: use a local time such as "2026-12-01 03:10" '
                 "or a duration ago such as 2h")
        at = (parsed.astimezone() if parsed.tzinfo is None else parsed).astimezone(UTC)
    else:
        at = now - timedelta(seconds=ago)
    if at > now:
        fail(f"--at: {value!r} is in the future; a replay shows what already happened")
    return at
