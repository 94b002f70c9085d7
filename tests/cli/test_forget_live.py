"""`nilemetrics forget` next to a running server: its pushed live numbers drop the person."""

from __future__ import annotations

import time

import httpx
from websockets.sync.client import connect

from tests.cli.conftest import Invoke
from tests.support import LiveServer, pushed_frame

P = "/api/metrics"


def test_cli_forget_reaches_running_servers_push(server: LiveServer, nm: Invoke) -> None:
    """After the CLI erases a live shopper, the WebSocket pushes numbers without them."""
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        ids = []
        for body in ({"email": "live.person@example.com"}, {}):
            sid = client.post(f"{P}/session/start", json=body).json()["sessionId"]
            client.post(f"{P}/track/page-visit", json={"sessionId": sid, "pageType": "homepage"})
            ids.append(sid)
    with connect(f"{server.ws_url}?token={server.token}", open_timeout=10) as ws:
        def next_metrics(deadline: float) -> dict[str, object] | None:
            while time.monotonic() < deadline:
                try:
                    frame = pushed_frame(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
                except TimeoutError:
                    return None
                if frame["event"] == "metrics-update":
                    return dict(frame["data"])
            return None

        def wait_for(homepage: int) -> dict[str, object] | None:
            deadline = time.monotonic() + 10
            latest = None
            while time.monotonic() < deadline:
                latest = next_metrics(deadline)
                if latest is not None and latest["homepage"] == homepage:
                    break
            return latest

        # The first frame may be a snapshot from before the last commit: wait for both.
        before = wait_for(2)
        assert before is not None and before["homepage"] == 2
        result = nm("forget", "--email", "live.person@example.com", "--yes",
                    "--database-url", server.settings.effective_database_url())
        assert result.exit_code == 0, result.output
        latest = wait_for(1)
        assert latest is not None and latest["homepage"] == 1
        assert latest["liveSessions"] == 1
