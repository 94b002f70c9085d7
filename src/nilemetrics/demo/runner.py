"""Running the demo: server, demo shop and shoppers in threads of one process, and back down.

``run_demo`` is what ``nilemetrics demo`` does once its options are parsed: a
throw-away SQLite database, the server and the demo shop under uvicorn, the
simulated shoppers on their own event loop, then the dashboard (handed in by the
caller, so this package never imports ``tui``) or a live line a second. However it
ends (the dashboard quits, the time is up, Ctrl-C), everything is stopped and joined
and the database removed. Problems that stop it are a ``DemoError`` with one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nilemetrics.config import Settings
from nilemetrics.demo.shoppers import (
    MAX_DURATION,
    SHOP,
    SimulationConfig,
    SimulationStats,
    simulate,
)

if TYPE_CHECKING:
    import httpx

#: ``run_dashboard(url, token, alert_errors_per_min, *, shop_url)`` of the terminal UI.
Dashboard = Callable[..., None]
#: Where a line goes: the status lines (stderr) or the live lines (stdout).
Say = Callable[[str], None]

DEFAULT_SHOP_PORT = 8001


class DemoError(Exception):
    """Something the demo or the simulator cannot get past; the message is one line."""


@dataclass(frozen=True)
class DemoPlan:
    """What ``nilemetrics demo`` was asked for, already checked."""

    shoppers: int = 30
    speed: float = 5.0
    error_rate: float = 0.15
    run_for: float | None = None
    """Shoppers stop after this long; without a dashboard the demo ends then too."""
    seed: int | None = None
    shop_port: int | None = None
    """The demo shop's port: None for 8001 (or any free one if taken), 0 for any free one."""
    serve_shop: bool = True


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def shop_port(wanted: int | None) -> int:
    """The demo shop's port: the one asked for, else 8001, else any free port."""
    if wanted is not None:
        return wanted or free_port()
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", DEFAULT_SHOP_PORT))
        except OSError:
            return free_port()
    return DEFAULT_SHOP_PORT


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
            raise DemoError(f"the demo could not listen on port {port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextlib.contextmanager
def background_shoppers(
    config: SimulationConfig, stats: SimulationStats, status: Say
) -> Iterator[None]:
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
            status(f"warning: the simulator stopped early: {problem[0]}")


def live_line(client: httpx.Client, stats: SimulationStats, started: float) -> str:
    """One line of the server's live numbers and the shoppers' totals so far."""
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


def print_live(url: str, token: str, stats: SimulationStats, run_for: float | None,
               output: Say) -> None:
    """A live line a second (faster for a short run) until ``run_for`` passes, or forever."""
    import httpx

    started = time.monotonic()
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=5.0) as client:
        while run_for is None or time.monotonic() - started < run_for:
            time.sleep(1.0 if run_for is None else min(1.0, max(0.05, run_for / 3)))
            output(live_line(client, stats, started))


def demo_settings(workdir: Path, token: str, shop: int | None) -> Settings:
    """Server settings of a demo: its database in ``workdir``, the shop's origins allowed."""
    # The simulated shoppers present themselves as browsers on SHOP.
    origins = [SHOP]
    if shop is not None:
        origins += [f"http://127.0.0.1:{shop}", f"http://localhost:{shop}"]
    return Settings(
        database_url=f"sqlite:///{workdir / 'demo.db'}",
        data_dir=workdir,
        config_dir=workdir / "config",
        dashboard_token=[token],
        cleanup_interval=5.0,
        allowed_origins=origins,
    )


def run_demo(plan: DemoPlan, *, dashboard: Dashboard | None, status: Say,
             output: Say) -> SimulationStats:
    """Run the demo until the dashboard quits, ``run_for`` passes (no dashboard) or Ctrl-C.

    ``status`` gets the lines about what runs where (stderr in the CLI), ``output``
    the live lines when there is no dashboard. Returns the shoppers' totals.
    """
    workdir = Path(tempfile.mkdtemp(prefix="nilemetrics-demo-"))
    token = secrets.token_urlsafe(24)
    shop = shop_port(plan.shop_port) if plan.serve_shop else None
    settings = demo_settings(workdir, token, shop)
    # Server warnings go to a file: on the terminal they would tear the dashboard apart.
    handler = logging.FileHandler(workdir / "server.log")
    logging.getLogger().addHandler(handler)
    stats = SimulationStats()
    status(f"demo database in {workdir} (removed when the demo stops)")
    try:
        with contextlib.ExitStack() as stack:
            from nilemetrics.server.app import create_app

            url = stack.enter_context(
                background_app(create_app(settings), free_port(), "nm-demo-server")
            )
            status(f"server on {url}; {plan.shoppers} shoppers; Ctrl-C stops")
            shop_url = None
            if shop is not None:
                from nilemetrics.demo.shop import create_shop_app

                shop_url = stack.enter_context(
                    background_app(create_shop_app(url), shop, "nm-demo-shop")
                )
                status(f"demo shop on {shop_url} (open it in a browser)")
            if plan.shoppers:
                config = SimulationConfig(
                    url=url, shoppers=plan.shoppers, duration=plan.run_for or MAX_DURATION,
                    error_rate=plan.error_rate, seed=plan.seed, speed=plan.speed,
                )
                stack.enter_context(background_shoppers(config, stats, status))
            if dashboard is not None:
                dashboard(url, token, 5.0, shop_url=shop_url)
            else:
                print_live(url, token, stats, plan.run_for, output)
    except KeyboardInterrupt:
        status("stopping…")
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
        shutil.rmtree(workdir, ignore_errors=True)
    stats.finished = time.monotonic()
    return stats


def check_reachable(url: str) -> None:
    """``DemoError`` unless a nilemetrics server answers at ``url`` (before simulating)."""
    import httpx  # only the simulator needs an HTTP client at start-up

    try:
        response = httpx.get(f"{url}/healthz", timeout=5.0)
    except httpx.HTTPError as exc:
        raise DemoError(f"cannot reach a server at {url}: {exc or type(exc).__name__}") from exc
    if response.status_code != 200:
        raise DemoError(
            f"{url}/healthz answered {response.status_code}: is this a nilemetrics server?"
        )
