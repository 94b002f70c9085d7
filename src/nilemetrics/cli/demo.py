"""`nilemetrics demo`: server, simulated shoppers and dashboard, all in one command."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from nilemetrics.cli.options import err_console, fail, out_console, seconds
from nilemetrics.cli.signals import stop_on_signals
from nilemetrics.cli.simulate import summary_table
from nilemetrics.config import Settings
from nilemetrics.simulation import (
    MAX_DURATION,
    SHOP,
    SimulationConfig,
    SimulationStats,
    simulate,
)

if TYPE_CHECKING:
    import httpx

Dashboard = Callable[..., None]
DEFAULT_SHOP_PORT = 8001


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


@contextlib.contextmanager
def background_app(app: Any, port: int, name: str) -> Iterator[str]:
    """An ASGI app under uvicorn in a thread on 127.0.0.1; stopped and joined on exit."""
    # Imported here so that other commands do not pay for the web stack at start-up.
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="error", access_log=False, lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(timeout=10)
            fail(f"the demo could not listen on port {port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _shop_port(wanted: int | None) -> int:
    """The demo shop's port: --shop-port, else 8001, else any free port."""
    if wanted is not None:
        return wanted or _free_port()
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", DEFAULT_SHOP_PORT))
        except OSError:
            return _free_port()
    return DEFAULT_SHOP_PORT


@contextlib.contextmanager
def background_shoppers(config: SimulationConfig, stats: SimulationStats) -> Iterator[None]:
    """The simulator on its own event loop in a thread; told to stop and joined on exit."""
    stop = threading.Event()
    problem: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(simulate(config, stats=stats, should_stop=stop.is_set))
        except Exception as exc:  # reported after the demo stops
            problem.append(exc)

    thread = threading.Thread(target=run, name="nm-demo-shoppers", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
        if problem:
            err_console.print(f"warning: the simulator stopped early: {problem[0]}",
                              highlight=False)


def _live_line(client: httpx.Client, stats: SimulationStats, started: float) -> str:
    import httpx

    try:
        metrics: dict[str, Any] = client.get("/api/metrics/live-metrics").json()
        live = f"live sessions {metrics['liveSessions']:>3}"
        rate = metrics.get("paymentSuccessRate")
        success = "–" if rate is None else f"{rate * 100:.0f}%"
    except (httpx.HTTPError, ValueError, KeyError):
        live, success = "live sessions   ?", "?"
    return (
        f"{time.monotonic() - started:5.0f}s  {live} · page visits {stats.page_visits} · "
        f"checkouts {stats.checkouts} · declines {stats.payment_errors} · "
        f"paid {stats.payments} · success rate {success}"
    )


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
    workdir = Path(tempfile.mkdtemp(prefix="nilemetrics-demo-"))
    token = secrets.token_urlsafe(24)
    shop = None if no_shop else _shop_port(shop_port)
    # The simulated shoppers present themselves as browsers on SHOP.
    origins = [SHOP]
    if shop is not None:
        origins += [f"http://127.0.0.1:{shop}", f"http://localhost:{shop}"]
    settings = Settings(
        database_url=f"sqlite:///{workdir / 'demo.db'}",
        data_dir=workdir,
        config_dir=workdir / "config",
        dashboard_token=[token],
        cleanup_interval=5.0,
        allowed_origins=origins,
    )
    # Server warnings go to a file: on the terminal they would tear the dashboard apart.
    handler = logging.FileHandler(workdir / "server.log")
    logging.getLogger().addHandler(handler)
    stats = SimulationStats()
    err_console.print(f"demo database in {workdir} (removed when the demo stops)",
                      highlight=False)
    # SIGTERM / SIGHUP stop the demo like Ctrl-C (the dashboard quits like `q`), so
    # the server and shoppers are stopped and the database removed either way.
    with stop_on_signals():
        try:
            with contextlib.ExitStack() as stack:
                from nilemetrics.server.app import create_app

                url = stack.enter_context(
                    background_app(create_app(settings), _free_port(), "nm-demo-server")
                )
                err_console.print(f"server on {url}; {shoppers} shoppers; Ctrl-C stops",
                                  highlight=False)
                shop_url = None
                if shop is not None:
                    from nilemetrics.server.shop import create_shop_app

                    shop_url = stack.enter_context(
                        background_app(create_shop_app(url), shop, "nm-demo-shop")
                    )
                    err_console.print(f"demo shop on {shop_url} (open it in a browser)",
                                      highlight=False)
                if shoppers:
                    config = SimulationConfig(
                        url=url, shoppers=shoppers, duration=run_for or MAX_DURATION,
                        error_rate=error_rate, seed=seed, speed=speed,
                    )
                    stack.enter_context(background_shoppers(config, stats))
                if dashboard is not None:
                    dashboard(url, token, 5.0, shop_url=shop_url)
                else:
                    _print_live(url, token, stats, run_for)
        except KeyboardInterrupt:
            err_console.print("stopping…", highlight=False)
        finally:
            logging.getLogger().removeHandler(handler)
            handler.close()
            shutil.rmtree(workdir, ignore_errors=True)
    stats.finished = time.monotonic()
    out_console.print(summary_table(stats.summary(), title="Demo summary"))


def _print_live(url: str, token: str, stats: SimulationStats, run_for: float | None) -> None:
    import httpx

    started = time.monotonic()
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=5.0) as client:
        while run_for is None or time.monotonic() - started < run_for:
            time.sleep(1.0 if run_for is None else min(1.0, max(0.05, run_for / 3)))
            out_console.print(_live_line(client, stats, started))
