"""PostgreSQL going away mid-flight: 503s that store nothing, then recovery."""

from __future__ import annotations

import time

import httpx
import pytest
from sqlalchemy import Engine

from nilemetrics.config import Settings
from tests.api.conftest import row_counts
from tests.api.journeys import P
from tests.support import FakeClock, TcpProxy, run_server

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_postgres_down_answers_503_then_recovers(settings: Settings, db: Engine) -> None:
    """With the database unreachable, events and reads get 503; afterwards all works."""
    proxy = TcpProxy(5432)
    proxy.start()
    via_proxy = settings.database_url.replace(":5432/", f":{proxy.port}/")  # type: ignore[union-attr]
    assert via_proxy != settings.database_url
    settings = settings.model_copy(update={"database_url": via_proxy})
    try:
        with run_server(settings, FakeClock()) as live, \
                httpx.Client(base_url=live.base_url, timeout=30) as http:
            sid = http.post(f"{P}/session/start").json()["sessionId"]
            before = row_counts(db)
            proxy.stop()
            body = {"sessionId": sid, "pageType": "homepage"}
            down = http.post(f"{P}/track/page-visit", json=body)
            assert down.status_code == 503, down.text
            assert down.json() == {
                "detail": "database unavailable; nothing was stored, retry later"
            }
            read = http.get(f"{P}/live-metrics", headers=live.auth)
            assert read.status_code == 503
            assert row_counts(db) == before

            proxy = TcpProxy(5432, port=proxy.port)
            proxy.start()
            deadline = time.monotonic() + 20
            while True:
                again = http.post(f"{P}/track/page-visit", json=body | {"eventId": "retry-1"})
                if again.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert again.status_code == 200, again.text
            metrics = http.get(f"{P}/live-metrics", headers=live.auth).json()
            assert metrics["homepage"] == 1
    finally:
        proxy.stop()
