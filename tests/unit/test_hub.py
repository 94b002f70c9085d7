"""The live-metrics hub with fake reads and fake transports: coalescing and one-slot mailboxes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from nilemetrics.protocol.frames import validate_frame
from nilemetrics.protocol.names import WsEvent
from nilemetrics.protocol.pushed import LiveMetrics, PaymentErrorRow
from nilemetrics.server import hub as hub_module
from nilemetrics.server.hub import Frame, Hub, Subscriber

INTERVAL = 0.05
#: asyncio may run a timer up to its clock resolution early; allow for that and no more.
SLACK = 0.002


class Source:
    """Numbers the test changes, read like the database: each read is recorded with its time."""

    def __init__(self) -> None:
        self.n = 0
        self.errors: list[PaymentErrorRow] = []
        self.metric_reads: list[float] = []
        self.error_reads = 0
        self.fail_next = 0

    async def compute_metrics(self) -> LiveMetrics:
        self.metric_reads.append(time.monotonic())
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("database is locked")
        # A new read time every time: only the numbers decide whether a frame goes out.
        return LiveMetrics(homepage=self.n, last_updated=datetime.now(UTC))

    async def compute_errors(self) -> list[PaymentErrorRow]:
        self.error_reads += 1
        return list(self.errors)


class Transport:
    """A subscriber's connection: the frames it took, in order; optionally stuck on a gate."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.frames: list[Frame] = []
        self.gate = gate

    async def send(self, frame: Frame) -> None:
        validate_frame(frame.text)  # every pushed frame must match the contract exactly
        self.frames.append(frame)
        if self.gate is not None:
            await self.gate.wait()
            self.gate = None

    def homepage(self) -> list[int]:
        """The homepage count of each metrics-update it took."""
        return [f.data["homepage"] for f in self.frames if f.event == WsEvent.METRICS_UPDATE]

    def events(self) -> list[WsEvent]:
        return [f.event for f in self.frames]


async def until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    """Wait until ``predicate()`` holds (fail after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.002)


class Running:
    """A started hub, its source, and the pumps of its subscribers."""

    def __init__(self, hub: Hub, source: Source, stored: list[LiveMetrics]) -> None:
        self.hub, self.source, self.stored = hub, source, stored
        self.pumps: list[asyncio.Task[None]] = []

    async def subscribe(self, transport: Transport) -> Subscriber:
        sub = await self.hub.subscribe(transport.send)
        self.pumps.append(asyncio.create_task(sub.pump()))
        return sub


@asynccontextmanager
async def running(refresh: float = 30.0, start: bool = True) -> AsyncIterator[Running]:
    source = Source()
    stored: list[LiveMetrics] = []

    async def store(metrics: LiveMetrics) -> None:
        stored.append(metrics)

    hub = Hub(compute_metrics=source.compute_metrics, compute_errors=source.compute_errors,
              store_metrics=store, push_interval=INTERVAL, refresh_interval=refresh)
    run = Running(hub, source, stored)
    if start:
        hub.start()
    try:
        yield run
    finally:
        await hub.stop()
        for task in run.pumps:
            task.cancel()
        await asyncio.gather(*run.pumps, return_exceptions=True)


async def test_the_first_subscriber_gets_the_current_numbers_at_once() -> None:
    """Subscribing reads both snapshots and sends them without waiting for a change."""
    async with running(start=False) as run:
        run.source.n = 5
        first = Transport()
        await run.subscribe(first)
        await until(lambda: len(first.frames) == 2)
        assert first.events() == [WsEvent.METRICS_UPDATE, WsEvent.PAYMENT_ERRORS_UPDATE]
        assert (first.homepage(), first.frames[1].data) == ([5], [])
        assert (len(run.source.metric_reads), run.source.error_reads, run.hub.pushes) == (1, 1, 1)

        second = Transport()
        await run.subscribe(second)
        await until(lambda: len(second.frames) == 2)
        # The numbers read for the first are handed to the next: no second read.
        assert (len(run.source.metric_reads), run.source.error_reads) == (1, 1)
        assert [f.text for f in second.frames] == [f.text for f in first.frames]


async def test_many_changes_coalesce_into_few_reads_at_most_one_per_interval() -> None:
    """A burst of mark_dirty calls: reads at least push_interval apart, frames only of changes."""
    async with running() as run:
        dashboard = Transport()
        await run.subscribe(dashboard)
        await until(lambda: len(dashboard.frames) == 2)
        run.source.metric_reads.clear()
        began = time.monotonic()
        for _ in range(60):
            run.source.n += 1
            run.hub.mark_dirty()
            await asyncio.sleep(0.004)
        await until(lambda: dashboard.homepage()[-1] == 60)
        elapsed = time.monotonic() - began
        reads = run.source.metric_reads
        gaps = [b - a for a, b in zip(reads, reads[1:], strict=False)]
        assert min(gaps) >= INTERVAL - SLACK, gaps
        assert len(reads) <= int(elapsed / INTERVAL) + 2 < 60
        pushed = dashboard.homepage()
        assert pushed == sorted(set(pushed)) and pushed[0] == 0
        assert len(pushed) - 1 <= len(reads)
        assert run.hub.pushes == len(pushed)


async def test_unchanged_numbers_are_not_pushed_again() -> None:
    """Reads that find the same numbers (only the read time differs) send no frame."""
    async with running() as run:
        dashboard = Transport()
        await run.subscribe(dashboard)
        for expected in range(2, 6):
            run.hub.mark_dirty(errors=True)
            await until(lambda e=expected: len(run.source.metric_reads) == e)
        await until(lambda: run.source.error_reads == 5)
        await asyncio.sleep(INTERVAL)
        assert (run.hub.pushes, dashboard.events()) == (
            1, [WsEvent.METRICS_UPDATE, WsEvent.PAYMENT_ERRORS_UPDATE]
        )
        assert len(run.stored) == 1  # stored only when pushed


async def test_a_change_of_errors_alone_reads_and_pushes_errors_only() -> None:
    """mark_dirty(metrics=False, errors=True) reads the errors, and pushes them if they changed."""
    async with running() as run:
        dashboard = Transport()
        await run.subscribe(dashboard)
        run.hub.mark_dirty()  # the hub starts dirty: let its first pass go by
        await until(lambda: len(run.source.metric_reads) == 2)
        await asyncio.sleep(INTERVAL)
        run.source.errors = [PaymentErrorRow(id=1, session_id="s", attempt=1,
                                             total_amount=84.2, payment_method="ziina")]
        run.hub.mark_dirty(metrics=False, errors=True)
        await until(lambda: len(dashboard.frames) == 3)
        assert len(run.source.metric_reads) == 2
        last = dashboard.frames[-1]
        assert last.event == WsEvent.PAYMENT_ERRORS_UPDATE
        assert [(r["id"], r["total_amount"], r["payment_method"]) for r in last.data] == [
            (1, 84.2, "ziina")
        ]


async def test_a_slow_subscriber_gets_only_the_latest_frame_and_slows_no_one() -> None:
    """While one send is stuck, others get every change; the stuck one then gets the latest."""
    async with running() as run:
        gate = asyncio.Event()
        slow, fast = Transport(gate), Transport()
        await run.subscribe(slow)
        await run.subscribe(fast)
        await until(lambda: len(slow.frames) == 1 and len(fast.frames) == 2)
        for n in range(1, 5):
            run.source.n = n
            run.hub.mark_dirty()
            await until(lambda n=n: fast.homepage()[-1] == n)
        assert fast.homepage() == [0, 1, 2, 3, 4]
        assert slow.homepage() == [0]
        gate.set()
        await until(lambda: slow.homepage() == [0, 4])
        await asyncio.sleep(INTERVAL)
        assert slow.homepage() == [0, 4]
        assert slow.events() == [WsEvent.METRICS_UPDATE, WsEvent.PAYMENT_ERRORS_UPDATE,
                                 WsEvent.METRICS_UPDATE]


async def test_a_mailbox_holds_one_frame_per_type() -> None:
    """Frames offered before a send keep only the latest of each type, in first-offer order."""
    transport = Transport()
    sub = Subscriber(transport.send)
    for n in range(3):
        sub.offer(Frame(WsEvent.METRICS_UPDATE, LiveMetrics(homepage=n)))
        sub.offer(Frame(WsEvent.PAYMENT_ERRORS_UPDATE, [PaymentErrorRow(id=n)]))
    pump = asyncio.create_task(sub.pump())
    try:
        await until(lambda: len(transport.frames) == 2)
        await asyncio.sleep(0.01)
        assert transport.homepage() == [2]
        assert [f.data[0]["id"] for f in transport.frames[1:]] == [2]
    finally:
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)


async def test_a_stuck_send_ends_the_pump(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that stops reading makes its pump fail after SEND_TIMEOUT (then it is dropped)."""
    monkeypatch.setattr(hub_module, "SEND_TIMEOUT", 0.05)
    stuck = Transport(asyncio.Event())
    sub = Subscriber(stuck.send)
    sub.offer(Frame(WsEvent.METRICS_UPDATE, LiveMetrics()))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(sub.pump(), 2.0)


async def test_time_alone_makes_the_hub_look_again() -> None:
    """Without mark_dirty, a change is found and pushed after refresh_interval."""
    async with running(refresh=0.1) as run:
        dashboard = Transport()
        await run.subscribe(dashboard)
        await until(lambda: len(dashboard.frames) == 2)
        run.source.n = 3
        await until(lambda: dashboard.homepage() == [0, 3], timeout=2.0)


async def test_a_failed_read_is_logged_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    """A read that fails leaves the hub running; the change is pushed by a later read."""
    async with running(refresh=0.1) as run:
        dashboard = Transport()
        await run.subscribe(dashboard)
        run.source.n, run.source.fail_next = 7, 1
        with caplog.at_level(logging.WARNING, logger="nilemetrics.server.hub"):
            run.hub.mark_dirty()
            await until(lambda: dashboard.homepage() == [0, 7], timeout=2.0)
        assert [r.getMessage() for r in caplog.records] == ["could not refresh live numbers"]


async def test_an_unsubscribed_dashboard_gets_nothing_more() -> None:
    """After unsubscribe, changes reach the other subscribers only."""
    async with running() as run:
        gone, stays = Transport(), Transport()
        sub = await run.subscribe(gone)
        await run.subscribe(stays)
        await until(lambda: len(gone.frames) == 2 and len(stays.frames) == 2)
        run.hub.unsubscribe(sub)
        run.source.n = 1
        run.hub.mark_dirty()
        await until(lambda: stays.homepage() == [0, 1])
        assert gone.homepage() == [0]


async def test_a_stopped_hub_reads_nothing() -> None:
    """After stop(), marking the hub dirty triggers no read."""
    async with running() as run:
        await run.hub.stop()
        run.hub.mark_dirty()
        await asyncio.sleep(3 * INTERVAL)
        assert run.source.metric_reads == []


async def test_stop_wins_over_a_change_marked_at_the_same_moment() -> None:
    """A change marked just before stop(): the hub stops all the same.

    Python 3.11's ``asyncio.wait_for`` swallows a cancellation that meets a wait
    that has just finished: the loop ran on, and a server's shutdown waited for it
    forever (a hang of that kind was seen in CI: a worker killed after the
    supervisor's grace period).
    """
    async with running() as run:
        await asyncio.sleep(2 * INTERVAL)  # the loop waits for a change
        run.hub.mark_dirty()
        await asyncio.sleep(0)  # the wait for it has finished; the loop has not resumed
        stopping = asyncio.ensure_future(run.hub.stop())
        done, _ = await asyncio.wait({stopping}, timeout=2)
        assert stopping in done, "the hub's loop ran on after stop()"


@pytest.mark.parametrize("steps", range(6))
async def test_a_cancelled_pump_stops_even_as_a_send_finishes(steps: int) -> None:
    """Cancelled at any moment around a frame it sends, a subscriber's pump ends.

    After ``steps`` turns of the event loop, one of which is the moment the send
    has just finished (where Python 3.11's ``wait_for`` lost the cancellation and the
    pump went back to waiting for frames that never came).
    """
    transport = Transport()
    sub = Subscriber(transport.send)
    pump = asyncio.ensure_future(sub.pump())
    await asyncio.sleep(0)
    sub.offer(Frame(WsEvent.METRICS_UPDATE, LiveMetrics(homepage=1)))
    for _ in range(steps):
        await asyncio.sleep(0)
    pump.cancel()
    done, _ = await asyncio.wait({pump}, timeout=1)
    assert pump in done and pump.cancelled(), "the pump ran on after it was cancelled"


async def test_a_heartbeat_goes_to_every_subscriber() -> None:
    """heartbeat() offers a metrics-heartbeat frame with its time and interval."""
    async with running(start=False) as run:
        a, b = Transport(), Transport()
        await run.subscribe(a)
        await run.subscribe(b)
        run.hub.heartbeat(datetime(2025, 3, 1, 12, 0, tzinfo=UTC), 5.0)
        await until(lambda: len(a.frames) == 3 and len(b.frames) == 3)
        for transport in (a, b):
            frame = transport.frames[-1]
            assert (frame.event, frame.data) == (
                WsEvent.METRICS_HEARTBEAT,
                {"timestamp": "2025-03-01T12:00:00Z", "intervalSeconds": 5.0},
            )


def test_a_frame_is_encoded_once_as_the_wire_carries_it() -> None:
    """Frame.text is the exact WebSocket text; Frame.data its decoded body."""
    frame = Frame(WsEvent.METRICS_UPDATE, LiveMetrics(payment_error=2))
    assert frame.text.startswith('{"event":"metrics-update","data":{"homepage":0,')
    data: dict[str, Any] = frame.data
    assert (data["paymentError"], data["lastUpdated"]) == (2, None)
