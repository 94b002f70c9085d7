"""`nilemetrics serve`: run the tracking server."""

from __future__ import annotations

import copy
import errno
import logging.config
import socket
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn

from nilemetrics.cli.options import DatabaseUrlOption, build_settings, err_console, fail
from nilemetrics.config import Settings, ensure_dashboard_tokens
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
    workers: Annotated[
        int | None,
        typer.Option(help="Server processes on the port; above 1 needs PostgreSQL "
                     "(env NILEMETRICS_WORKERS) [1].", show_default=False),
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
    log_level: Annotated[
        str, typer.Option(help="Log level: critical, error, warning, info, debug or trace.")
    ] = "info",
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
        workers=workers,
        alerts=alerts,
        metrics_public=metrics_public,
    )
    if log_level.lower() not in uvicorn.config.LOG_LEVELS:
        fail(f"--log-level: unknown level {log_level!r}; use one of "
             f"{', '.join(uvicorn.config.LOG_LEVELS)}")
    url = settings.effective_database_url()
    if settings.workers > 1 and url.startswith("sqlite"):
        fail(f"--workers {settings.workers} needs PostgreSQL: SQLite allows one writing "
             "process; pass --database-url postgresql+psycopg://USER@HOST/DB or use --workers 1")
    if settings.alerts is not None:
        from nilemetrics.server.alerts.rules import AlertsFileError, load_rules

        try:
            load_rules(settings.alerts)
        except AlertsFileError as exc:
            fail(str(exc))
    # Before migrating or printing "serving on": a taken port is the commonest failure.
    _check_port(host, port)
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
    many = settings.workers > 1
    err_console.print(
        f"nilemetrics serving on http://{host}:{port}  database: {redact_url(url)}"
        + (f"  workers: {settings.workers}" if many else ""),
        highlight=False,
        soft_wrap=True,
    )
    options = uvicorn_options(settings, host=host, port=port, log_level=log_level)
    if many:
        _serve_workers(settings, options)
        return
    from nilemetrics.server.app import create_app

    app = create_app(settings)
    uvicorn.run(app, **options)


def uvicorn_options(settings: Settings, *, host: str, port: int, log_level: str) -> dict[str, Any]:
    """``uvicorn.Config`` arguments of a server process (all but the app; picklable)."""
    from nilemetrics.server.http_guard import uvicorn_limits

    return {
        "host": host,
        "port": port,
        "log_level": log_level.lower(),
        "log_config": log_config(log_level, with_pid=settings.workers > 1),
        # Above info the access lines are dropped anyway; not building them for
        # every request saves the event loop real time under load.
        "access_log": log_level.lower() in ("trace", "debug", "info"),
        "proxy_headers": True,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
        "ws": "websockets-sansio",
        "ws_ping_interval": 20,
        # Slow, oversized and too many connections: 408, 431, 503 (see http_guard).
        **uvicorn_limits(settings),
    }


def log_config(log_level: str, *, with_pid: bool) -> dict[str, Any]:
    """uvicorn's logging configuration, with nilemetrics' own lines in the same format.

    With several workers every line names the process that wrote it.
    """
    config: dict[str, Any] = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    if with_pid:
        for formatter in config["formatters"].values():
            formatter["fmt"] = formatter["fmt"].replace(
                "%(levelprefix)s ", "%(levelprefix)s [%(process)d] ", 1)
    # Without a handler of their own, only warnings showed, and without a level prefix.
    config["loggers"]["nilemetrics"] = {
        "handlers": ["default"], "level": log_level.upper(), "propagate": False,
    }
    return config


def _serve_workers(settings: Settings, options: dict[str, Any]) -> None:
    """Run ``settings.workers`` worker processes on the port until stopped."""
    from nilemetrics.cli.workers import Supervisor, listen_socket

    logging.config.dictConfig(options["log_config"])
    try:
        sockets = [listen_socket(options["host"], options["port"])
                   for _ in range(settings.workers)]
    except OSError as exc:
        fail(f"cannot listen on {options['host']}:{options['port']}: {exc.strerror or exc}")
    failed = Supervisor((settings, options), sockets).run()
    if failed:
        fail(failed)
