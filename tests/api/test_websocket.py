"""The dashboard WebSocket: snapshot, coalesced pushes, errors, heartbeats, auth."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from nilemetrics.server import hub
from tests.api.journeys import P, nested_error
from tests.support import LiveServer, pushed_frame

Frame = dict[str, Any]


async def recv_until(ws: Any, predicate: Callable[[Frame], bool], timeout: float = 5.0) -> Frame:
    """Read frames until one satisfies ``predicate``; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("no matching frame in time")
        message = pushed_frame(await asyncio.wait_for(ws.recv(), remaining))
        if predicate(message):
            return message


def is_metrics(pred: Callable[[dict[str, Any]], bool]) -> Callable[[Frame], bool]:
    """Predicate on metrics-update frames' data."""
    return lambda f: f["event"] == "metrics-update" and pred(f["data"])


async def test_snapshot_on_connect_then_update_within_500ms(server: LiveServer) -> None:
    """A subscriber gets the snapshot at once and a metrics-update < 500 ms after a change."""
    async with websockets.connect(f"{server.ws_url}?token={server.token}") as ws, \
            httpx.AsyncClient(base_url=server.base_url) as http:
        first = pushed_frame(await asyncio.wait_for(ws.recv(), 2))
        second = pushed_frame(await asyncio.wait_for(ws.recv(), 2))
        assert {first["event"], second["event"]} == {"metrics-update", "payment-errors-update"}
        snap = first if first["event"] == "metrics-update" else second
        assert snap["data"]["liveSessions"] == 0
        await ws.send(json.dumps({"event": "join-seller-dashboard", "data": "seller-1"}))

        sid = str(uuid.uuid4())
        began = time.monotonic()
        response = await http.post(f"{P}/track/page-visit",
                                   json={"sessionId": sid, "pageType": "category",
                                         "pageIdentifier": "electronics"})
        assert response.status_code == 200
        update = await recv_until(ws, is_metrics(lambda d: d["categories"] == {"electronics": 1}))
        assert time.monotonic() - began < 0.5
        assert update["data"]["liveSessions"] == 1


async def test_bearer_header_also_accepted(server: LiveServer) -> None:
    """Non-browser clients may authenticate the WebSocket with a bearer header."""
    async with websockets.connect(server.ws_url, additional_headers=server.auth) as ws:
        frame = pushed_frame(await asyncio.wait_for(ws.recv(), 2))
        assert frame["event"] in {"metrics-update", "payment-errors-update"}


@pytest.mark.parametrize("suffix", ["", "?token=wrong"])
async def test_bad_token_closes_with_1008(server: LiveServer, suffix: str) -> None:
    """A missing or wrong token closes the socket with code 1008 and no data."""
    async with websockets.connect(f"{server.ws_url}{suffix}") as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 2)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    assert closed.value.rcvd.reason == "invalid or missing token"


async def test_payment_error_pushes_rows(server: LiveServer) -> None:
    """A payment failure pushes payment-errors-update with the new row."""
    async with websockets.connect(f"{server.ws_url}?token={server.token}") as ws, \
            httpx.AsyncClient(base_url=server.base_url) as http:
        sid = (await http.post(f"{P}/session/start", json={"email": "w@example.com"})).json()[
            "sessionId"]
        await http.post(f"{P}/track/checkout-start",
                        json={"sessionId": sid, "checkoutItems": [{"name": "Mug"}],
                              "totalAmount": 12})
        await http.post(f"{P}/track/payment-error",
                        json=nested_error(sid, "insufficient_funds", "Not enough money"))
        frame = await recv_until(ws, lambda f: f["event"] == "payment-errors-update"
                                 and len(f["data"]) == 1)
        row = frame["data"][0]
        assert (row["error_code"], row["email"], row["total_amount"]) == (
            "insufficient_funds", "w@example.com", 12.0)


async def test_cleanup_tick_sends_heartbeat(server: LiveServer) -> None:
    """Each cleanup run sends metrics-heartbeat with its timestamp."""
    async with websockets.connect(f"{server.ws_url}?token={server.token}") as ws, \
            httpx.AsyncClient(base_url=server.base_url) as http:
        # Subscribed once its first snapshot arrives: a heartbeat sent before then
        # (the handshake done, the subscription not yet) would never reach it.
        await recv_until(ws, lambda f: f["event"] == "metrics-update")
        await http.post(f"{P}/cleanup-sessions", headers=server.auth)
        beat = await recv_until(ws, lambda f: f["event"] == "metrics-heartbeat")
        assert beat["data"] == {"timestamp": "2026-11-24T12:00:00Z", "intervalSeconds": 3600.0}


async def test_session_leaving_live_window_is_pushed(server: LiveServer) -> None:
    """Without any event, a session that goes quiet leaves the numbers and that is pushed."""
    async with websockets.connect(f"{server.ws_url}?token={server.token}") as ws, \
            httpx.AsyncClient(base_url=server.base_url) as http:
        await http.post(f"{P}/track/page-visit",
                        json={"sessionId": str(uuid.uuid4()), "pageType": "homepage"})
        await recv_until(ws, is_metrics(lambda d: d["homepage"] == 1))
        server.clock.advance(120)
        await recv_until(ws, is_metrics(lambda d: d["homepage"] == 0), timeout=3)


async def test_updates_are_coalesced_under_load(server: LiveServer) -> None:
    """Hundreds of events produce a handful of frames, and the last one is exact."""
    async with websockets.connect(f"{server.ws_url}?token={server.token}") as ws, \
            httpx.AsyncClient(base_url=server.base_url) as http:
        await recv_until(ws, lambda f: f["event"] == "metrics-update")
        sids = [str(uuid.uuid4()) for _ in range(100)]
        pushes_before = server.state.hub.pushes

        async def shopper(sid: str) -> None:
            for page in ("homepage", "search", "product"):
                body = {"sessionId": sid, "pageType": page}
                assert (await http.post(f"{P}/track/page-visit", json=body)).status_code == 200

        await asyncio.gather(*(shopper(s) for s in sids))
        await recv_until(ws, is_metrics(lambda d: d["product"] == 100 and d["liveSessions"] == 100))
        frames = server.state.hub.pushes - pushes_before
        assert 1 <= frames < 60, frames  # 300 events, far fewer frames


async def test_slow_subscriber_does_not_delay_ingestion(server: LiveServer) -> None:
    """A subscriber that never reads blocks neither events nor others, and queues nothing."""
    stalled = await websockets.connect(f"{server.ws_url}?token={server.token}",
                                       max_queue=1, close_timeout=0.1)
    try:
        async with websockets.connect(f"{server.ws_url}?token={server.token}") as ws, \
                httpx.AsyncClient(base_url=server.base_url) as http:
            began = time.monotonic()
            for i in range(150):
                body = {"sessionId": str(uuid.uuid4()), "pageType": "offer",
                        "pageIdentifier": f"offer-{i:03d}-" + "x" * 240}
                assert (await http.post(f"{P}/track/page-visit", json=body)).status_code == 200
            await recv_until(ws, is_metrics(lambda d: len(d["offers"]) == 150))
            assert time.monotonic() - began < 10
            # Each subscriber holds at most one unsent frame per frame type.
            for sub in server.state.hub.subscribers:
                assert len(sub._pending) <= 3
    finally:
        await stalled.close()


async def test_malformed_client_frames_get_error_frame(server: LiveServer) -> None:
    """Unknown or malformed frames from a client are answered with an error frame."""
    async with websockets.connect(f"{server.ws_url}?token={server.token}") as ws:
        await ws.send("not json")
        frame = await recv_until(ws, lambda f: f["event"] == "error")
        assert frame["data"] == {"message": "unknown or malformed frame"}
        await ws.send(json.dumps({"event": "join-seller-dashboard", "data": "s1"}))
        await ws.send(json.dumps({"event": "dance"}))
        await recv_until(ws, lambda f: f["event"] == "error")


async def test_rows_changed_outside_the_server_are_pushed(server: LiveServer, db: Any) -> None:
    """A payment error removed by another process (e.g. forget) leaves the pushed list."""
    from sqlalchemy import delete

    from nilemetrics.server.tables import errors_t

    async with websockets.connect(f"{server.ws_url}?token={server.token}") as ws, \
            httpx.AsyncClient(base_url=server.base_url) as http:
        sid = (await http.post(f"{P}/session/start")).json()["sessionId"]
        await http.post(f"{P}/track/payment-error", json=nested_error(sid, "x", "y"))
        await recv_until(ws, lambda f: f["event"] == "payment-errors-update" and f["data"])
        with db.begin() as conn:
            conn.execute(delete(errors_t))
        await recv_until(ws, lambda f: f["event"] == "payment-errors-update" and not f["data"],
                         timeout=3)


def test_client_that_stops_reading_is_dropped(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subscriber that never reads is dropped once a send is stuck for SEND_TIMEOUT."""
    monkeypatch.setattr(hub, "SEND_TIMEOUT", 1.0)
    host, port = server.base_url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills up soon
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {P}/ws?token={server.token} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert sock.recv(12) == b"HTTP/1.1 101"  # from here on, it never reads again

    def websockets_open() -> int:
        return sum("WebSocket" in type(c).__name__ for c in server.server.server_state.connections)

    hub_state = server.state.hub
    try:
        with httpx.Client(base_url=server.base_url) as http:
            deadline = time.monotonic() + 5
            while not hub_state.subscribers:
                assert time.monotonic() < deadline, "never subscribed"
                time.sleep(0.02)
            sid = str(uuid.uuid4())
            http.post(f"{P}/track/checkout-start",
                      json={"sessionId": sid, "checkoutItems": [], "totalAmount": 10})
            deadline = time.monotonic() + 30
            n = 0
            while hub_state.subscribers:
                assert time.monotonic() < deadline, "the stuck subscriber was never dropped"
                n += 1  # every error changes the (large) payment-errors frame
                body = nested_error(sid, f"E{n}", f"{n} " + "x" * 2000)
                assert http.post(f"{P}/track/payment-error", json=body).status_code == 200
                time.sleep(0.06)
        deadline = time.monotonic() + 5
        while websockets_open():
            assert time.monotonic() < deadline, "the connection is still open"
            time.sleep(0.05)
    finally:
        sock.close()
