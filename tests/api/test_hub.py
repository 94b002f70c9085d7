"""The hub never pushes the same frame twice: on its own, and through a real server."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import websockets

from nilemetrics.protocol.pushed import LiveMetrics, PaymentErrorRow
from nilemetrics.server.hub import Frame, Hub
from tests.api.journeys import P, nested_error
from tests.api.test_socketio import Recorder as SocketIORecorder
from tests.support import LiveServer, pushed_frame


class Source:
    """Live numbers the test changes; a read may be held at a gate after it began."""

    def __init__(self) -> None:
        self.n = 0
        self.gates: list[asyncio.Event] = []

    async def metrics(self) -> LiveMetrics:
        """The numbers as they were when the read began (like a database snapshot)."""
        n = self.n
        if self.gates:
            await self.gates.pop(0).wait()
        read_at = datetime(2026, 12, 1, tzinfo=UTC) + timedelta(seconds=n)
        return LiveMetrics(homepage=n, live_sessions=n, pages={"homepage": n},
                           last_updated=read_at)

    async def errors(self) -> list[PaymentErrorRow]:
        """No payment errors."""
        return []


class Transport:
    """A subscriber's transport: the metrics bodies it was sent, in order."""

    def __init__(self) -> None:
        self.metrics: list[int] = []

    async def send(self, item: Frame) -> None:
        """Record a metrics-update body."""
        if item.event == "metrics-update":
            self.metrics.append(item.data["homepage"])


async def test_slow_snapshot_read_never_makes_the_hub_repeat_a_frame() -> None:
    """A subscriber's first read finishing late neither regresses the frame nor repeats one."""
    source = Source()
    hub = Hub(compute_metrics=source.metrics, compute_errors=source.errors,
              store_metrics=None, push_interval=0, refresh_interval=3600)
    hub.start()
    early, late = Transport(), Transport()
    pumps: list[asyncio.Task[None]] = []
    try:
        gate = asyncio.Event()
        source.gates.append(gate)
        # The first subscriber's snapshot read begins (n = 0) and is slow...
        first = asyncio.create_task(hub.subscribe(early.send))
        await asyncio.sleep(0.05)
        # ...meanwhile the numbers change and the hub's loop reads n = 1...
        source.n = 1
        hub.mark_dirty()
        await asyncio.sleep(0.05)
        # ...a second subscriber arrives, then the slow read ends.
        second = asyncio.create_task(hub.subscribe(late.send))
        await asyncio.sleep(0.05)
        gate.set()
        for sub in await asyncio.gather(first, second):
            pumps.append(asyncio.create_task(sub.pump()))
        await asyncio.sleep(0.05)
        hub.mark_dirty()  # nothing changed: nothing may be pushed
        await asyncio.sleep(0.1)
        assert late.metrics == [1]
        assert early.metrics in ([1], [0, 1])
        assert hub.metrics_frame is not None and hub.metrics_frame.data["homepage"] == 1
    finally:
        for pump in pumps:
            pump.cancel()
        await hub.stop()


def repeats(frames: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Frames whose body equals the previous frame of the same event (lastUpdated aside)."""
    last: dict[str, Any] = {}
    repeated = []
    for event, data in frames:
        body = ({k: v for k, v in data.items() if k != "lastUpdated"}
                if event == "metrics-update" else data)
        if event in last and last[event] == body:
            repeated.append((event, data))
        last[event] = body
    return repeated


async def test_no_repeated_identical_frames_after_a_payment_error(server: LiveServer) -> None:
    """After a payment error, several refresh ticks push nothing again, on either transport."""
    sio = SocketIORecorder()
    ws_frames: list[tuple[str, Any]] = []
    async with websockets.connect(f"{server.ws_url}?token={server.token}") as ws, \
            httpx.AsyncClient(base_url=server.base_url) as http:
        await sio.client.connect(server.base_url, auth={"token": server.token},
                                 transports=["websocket"], wait_timeout=5)
        try:
            sid = (await http.post(f"{P}/session/start", json={"email": "r@example.com"})
                   ).json()["sessionId"]
            await http.post(f"{P}/track/checkout-start", json={
                "sessionId": sid, "checkoutItems": [{"name": "Mug"}], "totalAmount": 12})
            await http.post(f"{P}/track/payment-error",
                            json=nested_error(sid, "card_declined", "Card declined"))
            # Four refresh ticks (refresh_interval is 0.5 s in tests) after the error.
            deadline = time.monotonic() + 4 * server.settings.refresh_interval + 0.5
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    message = pushed_frame(await asyncio.wait_for(ws.recv(), remaining))
                except TimeoutError:
                    break
                ws_frames.append((message["event"], message["data"]))
        finally:
            await sio.client.disconnect()
    for frames in (ws_frames, sio.frames):
        errors = [data for event, data in frames if event == "payment-errors-update"]
        assert [len(rows) for rows in errors] == [0, 1]
        assert errors[1][0]["error_code"] == "card_declined"
        assert repeats(frames) == []
    last_ws, last_sio = ([data for event, data in frames if event == "metrics-update"][-1]
                         for frames in (ws_frames, sio.frames))
    assert last_ws == last_sio
    assert (last_ws["paymentErrorsLastHour"], last_ws["checkoutsLastHour"]) == (1, 1)
