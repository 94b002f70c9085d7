"""Socket.IO at /socket.io: the seller dashboard's client gets the WebSocket's frames."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import socketio
import websockets

from tests.api.journeys import P, nested_error
from tests.support import LiveServer, pushed_data, pushed_frame

EVENTS = ("metrics-update", "payment-errors-update", "metrics-heartbeat")


class Recorder:
    """A python-socketio client that records every frame it receives, in order."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.frames: list[tuple[str, Any]] = []
        self.refusals: list[Any] = []
        self._arrived = asyncio.Event()
        for event in EVENTS:
            self.client.on(event, self._recorder(event))
        self.client.on("connect_error", self.refusals.append)

    def _recorder(self, event: str) -> Callable[[Any], None]:
        def record(data: Any) -> None:
            self.frames.append((event, pushed_data(event, data)))
            self._arrived.set()

        return record

    async def next(
        self, event: str, predicate: Callable[[Any], bool] = lambda _: True, timeout: float = 5
    ) -> Any:
        """The data of the first recorded ``event`` frame satisfying ``predicate``."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for name, data in self.frames[seen:]:
                if name == event and predicate(data):
                    return data
            seen = len(self.frames)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching {event} in time; got {self.frames}")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                pass


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    """A Socket.IO client, disconnected after the test."""
    rec = Recorder()
    yield rec
    if rec.client.connected:
        await rec.client.disconnect()


async def get_json(server: LiveServer, path: str) -> Any:
    """GET a dashboard endpoint with the token."""
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        response = await http.get(f"{P}{path}", headers=server.auth)
    assert response.status_code == 200, response.text
    return response.json()


async def test_auth_token_gets_snapshot_then_live_frames(
    server: LiveServer, recorder: Recorder
) -> None:
    """auth.token: snapshot at once, then a page visit and a payment error, as on the WebSocket."""
    began = time.monotonic()
    await recorder.client.connect(server.base_url, auth={"token": server.token},
                                  transports=["websocket"], wait_timeout=5)
    snapshot = await recorder.next("metrics-update", timeout=2)
    assert await recorder.next("payment-errors-update", timeout=2) == []
    assert time.monotonic() - began < 2
    assert snapshot == await get_json(server, "/live-metrics")
    assert (snapshot["liveSessions"], snapshot["categories"], snapshot["lastUpdated"]) == (
        0, {}, "2026-11-24T12:00:00Z")

    async with websockets.connect(f"{server.ws_url}?token={server.token}") as ws, \
            httpx.AsyncClient(base_url=server.base_url) as http:
        sid = (await http.post(f"{P}/session/start", json={"email": "s@example.com"})).json()[
            "sessionId"]
        await http.post(f"{P}/track/page-visit", json={
            "sessionId": sid, "pageType": "category", "pageIdentifier": "electronics"})
        update = await recorder.next("metrics-update", lambda d: d["categories"] != {})
        assert (update["categories"], update["liveSessions"], update["homepage"]) == (
            {"electronics": 1}, 1, 0)

        await http.post(f"{P}/track/checkout-start", json={
            "sessionId": sid, "checkoutItems": [{"name": "Mug"}], "totalAmount": 12})
        await http.post(f"{P}/track/payment-error",
                        json=nested_error(sid, "card_declined", "Card declined"))
        rows = await recorder.next("payment-errors-update", lambda d: len(d) == 1)
        row = rows[0]
        assert (row["session_id"], row["email"], row["error_code"], row["error_message"],
                row["attempt"], row["checkout_items"]) == (
            sid, "s@example.com", "card_declined", "Card declined", 1, [{"name": "Mug"}])
        assert row["total_amount"] == 12.0 and isinstance(row["total_amount"], float)
        # The same body as the WebSocket's frame, as JSON objects.
        while True:
            message = pushed_frame(await asyncio.wait_for(ws.recv(), 5))
            if message["event"] == "payment-errors-update" and message["data"]:
                break
        assert rows == message["data"]
        after = await recorder.next("metrics-update", lambda d: d["paymentErrorsLastHour"] == 1)
        assert (after["checkoutsLastHour"], after["paymentFailuresLastHour"],
                after["liveSessions"]) == (1, 1, 1)


async def test_query_token_and_seller_room(server: LiveServer, recorder: Recorder) -> None:
    """?token= (polling handshake, then upgrade): snapshot, join, live metrics and error rows."""
    # Default transports, as socket.io-client: a polling-only client that disconnects
    # waits for its pending long poll (python-engineio), which slows teardown by 30 s.
    await recorder.client.connect(f"{server.base_url}?token={server.token}", wait_timeout=5)
    snapshot = await recorder.next("metrics-update", timeout=2)
    assert snapshot["liveSessions"] == 0
    assert await recorder.next("payment-errors-update", timeout=2) == []

    answer = await recorder.client.call("join-seller-dashboard", "seller-42", timeout=5)
    assert answer == {"sellerId": "seller-42"}
    endpoint = server.server.config.app.state.socket_io  # type: ignore[union-attr]
    assert "seller:seller-42" in endpoint.server.rooms(recorder.client.get_sid())
    assert await recorder.client.call("join-seller-dashboard", None, timeout=5) == {
        "error": "a seller id (string or number) is required"}

    sid = str(uuid.uuid4())
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        await http.post(f"{P}/track/page-visit", json={"sessionId": sid, "pageType": "homepage"})
        update = await recorder.next("metrics-update", lambda d: d["homepage"] == 1)
        assert (update["liveSessions"], update["paymentErrorsLastHour"]) == (1, 0)
        await http.post(f"{P}/track/payment-error", json={
            "sessionId": sid, "errorCode": "expired_card", "errorMessage": "Card expired"})
        rows = await recorder.next("payment-errors-update", lambda d: len(d) == 1)
        assert (rows[0]["session_id"], rows[0]["error_code"], rows[0]["error_message"],
                rows[0]["total_amount"], rows[0]["attempt"]) == (
            sid, "expired_card", "Card expired", None, 1)
        assert rows == await get_json(server, "/payment-errors")
        await http.post(f"{P}/cleanup-sessions", headers=server.auth)
    assert await recorder.next("metrics-heartbeat") == {
        "timestamp": "2026-11-24T12:00:00Z", "intervalSeconds": 3600.0}


async def test_bearer_header_accepted_and_disconnect_unsubscribes(
    server: LiveServer, recorder: Recorder
) -> None:
    """A bearer header is accepted; a client that leaves stops being a hub subscriber."""
    await recorder.client.connect(server.base_url, headers=server.auth,
                                  transports=["websocket"], wait_timeout=5)
    assert (await recorder.next("metrics-update", timeout=2))["liveSessions"] == 0
    endpoint = server.server.config.app.state.socket_io  # type: ignore[union-attr]
    assert (endpoint.clients, len(server.state.hub.subscribers)) == (1, 1)
    await recorder.client.disconnect()
    deadline = time.monotonic() + 5
    while endpoint.clients or server.state.hub.subscribers:
        assert time.monotonic() < deadline, "the client was not forgotten"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("suffix", "auth"),
    [("", None), ("", {"token": "wrong"}), ("?token=wrong", None), ("", {"token": 123})],
    ids=["none", "wrong-auth", "wrong-query", "not-a-string"],
)
async def test_bad_token_refused_without_data(
    server: LiveServer, recorder: Recorder, suffix: str, auth: dict[str, Any] | None
) -> None:
    """A missing or wrong token is refused with a connect_error and gets no frame at all."""
    with pytest.raises(socketio.exceptions.ConnectionError):
        await recorder.client.connect(f"{server.base_url}{suffix}", auth=auth,
                                      transports=["websocket"], wait_timeout=5)
    assert recorder.refusals == [{"message": "invalid or missing token"}]
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        await http.post(f"{P}/track/page-visit",
                        json={"sessionId": str(uuid.uuid4()), "pageType": "homepage"})
    await asyncio.sleep(0.5)
    assert recorder.frames == []
    assert server.server.config.app.state.socket_io.clients == 0  # type: ignore[union-attr]
    assert server.state.hub.subscribers == set()


async def test_cors_origins_are_the_apis(server: LiveServer) -> None:
    """The handshake answers the shop's origin once (credentials allowed) and refuses others."""
    url = f"{server.base_url}/socket.io/?EIO=4&transport=polling"
    async with httpx.AsyncClient() as http:
        shop = await http.get(url, headers={"Origin": "http://shop.test"})
        assert shop.status_code == 200
        assert shop.headers.get_list("access-control-allow-origin") == ["http://shop.test"]
        assert shop.headers["access-control-allow-credentials"] == "true"
        assert shop.text.startswith('0{"sid":')

        preflight = await http.options(url, headers={
            "Origin": "http://shop.test", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "http://shop.test"

        other = await http.get(url, headers={"Origin": "http://evil.test"})
        assert other.status_code == 400
        assert "access-control-allow-origin" not in other.headers


async def test_stalled_client_holds_only_the_latest_frames(server: LiveServer) -> None:
    """A polling client that stops polling queues nothing more; on return it gets the latest."""
    base = f"{server.base_url}/socket.io/?EIO=4&transport=polling"
    async with httpx.AsyncClient(timeout=10) as http:
        opened = await http.get(base)
        eio_sid = json.loads(opened.text[1:])["sid"]
        url = f"{base}&sid={eio_sid}"
        answer = await http.post(url, content="40" + json.dumps({"token": server.token}))
        assert answer.text == "OK"
        endpoint = server.server.config.app.state.socket_io  # type: ignore[union-attr]
        eio_socket = endpoint.server.eio.sockets[eio_sid]
        for i in range(60):
            body = {"sessionId": str(uuid.uuid4()), "pageType": "offer",
                    "pageIdentifier": f"offer-{i:02d}"}
            visit = await http.post(f"{server.base_url}{P}/track/page-visit", json=body)
            assert visit.status_code == 200
            await asyncio.sleep(0.01)
        deadline = time.monotonic() + 5
        while server.state.hub.metrics_frame.data["liveSessions"] != 60:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        # The CONNECT answer and the snapshot wait in Engine.IO's queue; everything
        # since waits in the hub's mailbox, one frame per type.
        assert eio_socket.queue.qsize() == 2
        (sub,) = server.state.hub.subscribers
        assert sorted(sub._pending) == ["metrics-update"]

        packets = []
        while not any('"liveSessions":60' in p for p in packets):
            polled = await http.get(url)
            packets += polled.text.split("\x1e")
        assert packets[0].startswith('40{"sid":')
        events = [json.loads(p[2:])[0] for p in packets if p.startswith("42")]
        assert events[:2] == ["metrics-update", "payment-errors-update"]
        assert len(events) <= 4, events


class _Lines(logging.Handler):
    """Collects formatted log lines."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the line as a log file would get it."""
        self.lines.append(record.getMessage())


async def test_query_token_is_masked_in_server_logs(
    server: LiveServer, recorder: Recorder
) -> None:
    """A ?token= on Socket.IO URLs (polling and WebSocket) reaches the logs as token=***."""
    handler = _Lines()
    loggers = [logging.getLogger(name) for name in ("uvicorn.access", "uvicorn.error")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.INFO)
        lg.addHandler(handler)
    try:
        await recorder.client.connect(f"{server.base_url}?token={server.token}", wait_timeout=5)
        await recorder.next("metrics-update", timeout=2)
        assert recorder.client.transport() == "websocket"
        await recorder.client.disconnect()
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
    socket_lines = [line for line in handler.lines if "/socket.io/" in line]
    assert any("GET /socket.io/?token=***&" in line for line in socket_lines), socket_lines
    assert any("WebSocket /socket.io/?token=***&" in line for line in socket_lines), socket_lines
    assert not [line for line in handler.lines if server.token in line]
