"""`nilemetrics serve`: run the tracking server."""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from nilemetrics.cli.common import build_settings, err_console, fail
from nilemetrics.cli.db import DatabaseUrlOption
from nilemetrics.config import ensure_dashboard_tokens
from nilemetrics.server.db import (
    DatabaseUnavailable,
    DatabaseUrlError,
    make_engine,
    migrate,
    redact_url,
)


def _check_port(host: str, port: int) -> None:
    """A one-line error if uvicorn could not listen on ``host:port``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    where = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            # As uvicorn binds: connections still closing do not count as taken.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            fail(f"cannot listen on {where}: the port is already in use (another nilemetrics "
                 "serve?); stop it or pass another --port")
        if isinstance(exc, socket.gaierror):
            fail(f"cannot listen on {where}: unknown host {host!r}; pass --host with an "
                 "address of this machine")
        fail(f"cannot listen on {where}: {exc.strerror or exc}; check --host and --port")


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    database_url: DatabaseUrlOption = None,
    token: Annotated[
        list[str] | None,
        typer.Option(
            "--token",
            help="Dashboard bearer token (repeatable). Default: NILEMETRICS_DASHBOARD_TOKEN, "
            "else one generated and stored in your config directory.",
            show_default=False,
        ),
    ] = None,
    live_window: Annotated[
        str | None, typer.Option(help="A session is live this long after its last event [90s].")
    ] = None,
    session_timeout: Annotated[
        str | None, typer.Option(help="Cleanup ends sessions idle this long [30m].")
    ] = None,
    cleanup_interval: Annotated[
        str | None,
        typer.Option(help="Time between cleanup ticks / heartbeats, at least 1s [15s]."),
    ] = None,
    allowed_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-origin",
            help="Shop origin allowed to call the API from a browser, e.g. "
            "https://shop.example (repeatable; env NILEMETRICS_ALLOWED_ORIGINS, comma-separated).",
            show_default=False,
        ),
    ] = None,
    ip_storage: Annotated[
        str | None,
        typer.Option(help="Client IPs are stored: full, anonymized (default) or none."),
    ] = None,
    honour_privacy_signals: Annotated[
        bool | None,
        typer.Option(
            "--honour-privacy-signals/--ignore-privacy-signals",
            help="Count Sec-GPC / DNT requests without personal data [honour].",
            show_default=False,
        ),
    ] = None,
    alerts: Annotated[
        Path | None,
        typer.Option(
            "--alerts",
            help="TOML file of alert rules to evaluate and notify about (env "
            "NILEMETRICS_ALERTS). Check one with: nilemetrics alerts check FILE.",
            show_default=False,
        ),
    ] = None,
    metrics_public: Annotated[
        bool | None,
        typer.Option(
            "--metrics-public/--metrics-token",
            help="Serve GET /metrics without the dashboard token [token].",
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the tracking server (ingestion API, dashboard API, WebSocket).

    Example: nilemetrics serve --port 8000 --allowed-origin https://shop.example
    """
    settings = build_settings(
        database_url=database_url,
        dashboard_token=token or None,
        live_window=live_window,
        session_timeout=session_timeout,
        cleanup_interval=cleanup_interval,
        allowed_origins=allowed_origin or None,
        ip_storage=ip_storage,
        honour_privacy_signals=honour_privacy_signals,
        alerts=alerts,
        metrics_public=metrics_public,
    )
    if settings.alerts is not None:
        from nilemetrics.server.alerts.rules import AlertsFileError, load_rules

        try:
            load_rules(settings.alerts)
        except AlertsFileError as exc:
            fail(str(exc))
    # Before migrating or printing "serving on": a taken port is the commonest failure.
    _check_port(host, port)
    url = settings.effective_database_url()
    try:
        engine = make_engine(url)
        migrate(engine)
        engine.dispose()
    except (DatabaseUrlError, DatabaseUnavailable) as exc:
        fail(f"cannot use database {redact_url(url)}: {exc}")
    _tokens, generated = ensure_dashboard_tokens(settings)
    if generated:
        err_console.print(
            "[bold]Generated a dashboard token[/] (shown once; stored in "
            f"{settings.token_file}):\n  {generated}",
            highlight=False,
        )
    err_console.print(
        f"nilemetrics serving on http://{host}:{port}  database: {redact_url(url)}",
        highlight=False,
        soft_wrap=True,
    )
    from nilemetrics.server.app import create_app
    from nilemetrics.server.http_guard import uvicorn_limits

    app = create_app(settings)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        # Above info the access lines are dropped anyway; not building them for
        # every request saves the event loop real time under load.
        access_log=log_level.lower() in ("trace", "debug", "info"),
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        ws="websockets-sansio",
        ws_ping_interval=20,
        # Slow, oversized and too many connections: 408, 431, 503 (see http_guard).
        **uvicorn_limits(settings),
    )
