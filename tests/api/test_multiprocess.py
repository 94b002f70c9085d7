"""Several server processes on one PostgreSQL: changes reach every process's subscribers."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
import websockets

from nilemetrics.config import Settings
from tests.api.test_websocket import is_metrics, recv_until
from tests.support import FakeClock, run_server

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_event_on_one_server_pushes_on_the_other(settings: Settings) -> None:
    """A page visit posted to server A shows up on server B's WebSocket (LISTEN/NOTIFY)."""
    # Slow B's own refresh so only NOTIFY can explain a prompt update.
    quiet = settings.model_copy(update={"refresh_interval": 60.0})
    clock = FakeClock()
    with run_server(settings, clock) as a, run_server(quiet, clock) as b:
        async with websockets.connect(f"{b.ws_url}?token={b.token}") as ws:
            first = await recv_until(ws, lambda f: f["event"] == "metrics-update")
            assert first["data"]["liveSessions"] == 0
            async with httpx.AsyncClient(base_url=a.base_url) as http:
                response = await http.post(
                    "/api/metrics/track/page-visit",
                    json={"sessionId": str(uuid.uuid4()), "pageType": "category",
                          "pageIdentifier": "books"},
                )
                assert response.status_code == 200
            frame = await recv_until(ws, is_metrics(lambda d: d["categories"] == {"books": 1}),
                                     timeout=3)
            assert json.dumps(frame)  # a full metrics-update body arrived
