"""Real-browser fixtures: Debian's Chromium driven by Playwright, shop and API on two origins.

The shop (``http://localhost:SHOP``) loads ``/tracker.js`` from the metrics API
(``http://127.0.0.1:PROXY``), as in production: a different origin. The API is
reached through a TCP proxy so that a test can take it away and bring it back.
Without Chromium or Playwright these tests skip locally and fail in CI.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Row, Table, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from nilemetrics.config import Settings
from nilemetrics.demo.shop import create_shop_app
from nilemetrics.server.db import make_engine
from tests.conftest import TEST_TOKEN
from tests.support import FakeClock, LiveServer, TcpProxy, free_port, run_server, serve_app

CHROMIUM = os.environ.get("NILEMETRICS_TEST_CHROMIUM", "/usr/bin/chromium")

def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"browser tests are required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module.

    Not per session: Playwright's sync API leaves its asyncio loop marked as running
    in the main thread until it stops, and later tests need ``asyncio.run``.
    """
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[test]')")
    if not shutil.which(CHROMIUM):
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Site:
    """The metrics API (behind a proxy) and the demo shop on another origin."""

    api: LiveServer
    proxy: TcpProxy
    api_url: str
    shop_url: str
    other_url: str
    """A second allowed origin, serving the test's own pages (``other_pages``)."""
    other_pages: dict[str, str]
    """Path → HTML served at ``other_url`` (a test puts its page here)."""

    def client(self) -> httpx.Client:
        """An authorised client straight to the API (not through the proxy)."""
        return httpx.Client(base_url=self.api.base_url, headers=self.api.auth, timeout=10)

    def rows(self, table: Table) -> list[Row[Any]]:
        """Every row of a table, read from the server's database."""
        engine = make_engine(self.api.settings.effective_database_url())
        try:
            with engine.connect() as conn:
                return list(conn.execute(select(table)))
        finally:
            engine.dispose()

    def live(self) -> dict[str, Any]:
        """The live metrics right now."""
        with self.client() as client:
            response = client.get("/api/metrics/live-metrics")
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            return body

    def wait_for(
        self, check: Callable[[dict[str, Any]], bool], timeout: float = 10.0
    ) -> dict[str, Any]:
        """Poll live metrics until ``check`` holds; fail with the last numbers seen."""
        deadline = time.monotonic() + timeout
        while True:
            metrics = self.live()
            if check(metrics):
                return metrics
            if time.monotonic() > deadline:
                raise AssertionError(f"live metrics never matched: {metrics}")
            time.sleep(0.1)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """A metrics server on SQLite, a proxy in front of it, and the demo shop."""
    shop_port = free_port()
    shop_origin = f"http://localhost:{shop_port}"
    other_pages: dict[str, str] = {}

    async def other_page(request: Request) -> Response:
        html = other_pages.get(request.url.path)
        return HTMLResponse(html) if html is not None else Response(status_code=404)

    # Bound for the whole test (not per test on a port picked earlier, which another
    # connection could take in between: "address already in use" in a CI run).
    with serve_app(Starlette(routes=[Route("/{path:path}", other_page)])) as other:
        other_url = f"http://localhost:{other.config.port}"
        settings = Settings(
            database_url=f"sqlite:///{tmp_path / 'metrics.db'}",
            data_dir=tmp_path / "data",
            config_dir=tmp_path / "config",
            dashboard_token=[TEST_TOKEN],
            allowed_origins=[shop_origin, other_url],
            cleanup_interval=3600,
            push_interval=0.05,
            refresh_interval=0.5,
        )
        with run_server(settings, FakeClock()) as api:
            proxy = TcpProxy(api.server.config.port)
            proxy.start()
            api_url = f"http://127.0.0.1:{proxy.port}"
            try:
                with serve_app(create_shop_app(api_url), port=shop_port):
                    yield Site(api=api, proxy=proxy, api_url=api_url, shop_url=shop_origin,
                               other_url=other_url, other_pages=other_pages)
            finally:
                proxy.stop()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A fresh browser profile per test; page errors make the test fail."""
    ctx = browser.new_context()
    errors: list[str] = []
    ctx.on("weberror", lambda error: errors.append(str(error.error)))
    try:
        yield ctx
    finally:
        ctx.close()
    assert not errors, f"uncaught errors in the page: {errors}"
