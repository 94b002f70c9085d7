"""How long the dashboard takes to apply one metrics-update frame and a 1,000-row error table.

Run: .venv/bin/python benchmarks/tui_frames.py

Each figure is the time from handing the frame to the app until the widgets
hold the new state (parsing, history, message handling, widget updates), plus
excluding the repaint (measured once at the end). The issue asks to keep up with 20 frames a
second, i.e. under 50 ms per metrics frame.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from nilemetrics.tui.app import NileMetricsApp
from nilemetrics.tui.config import DashboardConfig
from nilemetrics.tui.feed import Connected, FeedEvent, Frame
from nilemetrics.tui.widgets.count_panel import CountPanel
from nilemetrics.tui.widgets.error_table import ErrorTable

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def metrics(i: int) -> Frame:
    """A metrics frame whose numbers change with ``i``."""
    at = T0 + timedelta(seconds=i * 0.05)
    return Frame("metrics-update", {
        "homepage": i % 97, "categories": {f"cat-{k}": (i + k) % 13 for k in range(30)},
        "offers": {f"offer-{k}": (i * k) % 7 for k in range(10)}, "checkout": i % 11,
        "payment": i % 5, "paymentError": i % 3, "liveSessions": 500 + i % 50,
        "checkoutsLastHour": 300, "paymentErrorsLastHour": 40, "paymentSuccessesLastHour": 250,
        "paymentFailuresLastHour": 30, "paymentSuccessRate": 0.89,
        "lastUpdated": at.isoformat().replace("+00:00", "Z"),
    })


def rows(n: int, offset: int) -> Frame:
    """A payment-errors frame of ``n`` rows."""
    return Frame("payment-errors-update", [
        {
            "id": offset + k, "session_id": f"s-{k}", "attempt": 1,
            "email": f"customer{k}@example.com", "phone": "+49 170 1234567",
            "checkout_items": [{"name": "Tea mug", "quantity": 2, "price": "9.99"}],
            "total_amount": "19.98", "payment_method": "card",
            "payment_error_at": (T0 - timedelta(seconds=k * 3)).isoformat(),
            "error_code": "card_declined", "error_message": "Your card was declined",
            "error_details": {"errorCode": "card_declined"}, "ip_address": "203.0.113.0",
            "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0.0.0",
            "checkout_status": "failed",
        }
        for k in range(n)
    ])


class Feed:
    """A feed the benchmark pushes into."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[FeedEvent] = asyncio.Queue()

    async def run(self) -> AsyncIterator[FeedEvent]:
        """Yield what is pushed."""
        while True:
            yield await self.queue.get()


async def wait(predicate: Any) -> None:
    """Spin the loop until the predicate holds."""
    while not predicate():
        await asyncio.sleep(0)


async def main() -> None:
    """Measure and print."""
    feed = Feed()
    app = NileMetricsApp(DashboardConfig(), feed.run)
    async with app.run_test(size=(160, 48)) as pilot:
        feed.queue.put_nowait(Connected())
        home = app.query_one("#homepage", CountPanel)
        frame_times: list[float] = []
        for i in range(1, 201):
            frame = metrics(i)
            start = time.perf_counter()
            feed.queue.put_nowait(frame)
            await wait(lambda i=i: home.count == i % 97
                       and app.metrics.live_sessions == 500 + i % 50)
            frame_times.append(time.perf_counter() - start)
        await pilot.pause()
        table = app.query_one(ErrorTable)
        table_times: list[float] = []
        for round_ in range(5):
            frame = rows(1000, round_ * 1000)
            start = time.perf_counter()
            feed.queue.put_nowait(frame)
            await wait(lambda r=round_: table.row_count == 1000
                       and table.rows_shown[0].key == f"id:{r * 1000}")
            table_times.append(time.perf_counter() - start)
        # The usual case: one new error on top of a full table.
        base = rows(1000, 10_000).data
        one_new: list[float] = []
        for k in range(1, 6):
            extra = rows(1, 20_000 + k).data[0]
            extra["payment_error_at"] = (T0 + timedelta(seconds=k)).isoformat()
            base = [extra, *base[:-1]]
            start = time.perf_counter()
            feed.queue.put_nowait(Frame("payment-errors-update", base))
            await wait(lambda k=k: table.rows_shown[0].key == f"id:{20_000 + k}")
            one_new.append(time.perf_counter() - start)
        repaint_start = time.perf_counter()
        await pilot.pause()
        repaint = time.perf_counter() - repaint_start
    ms = [t * 1000 for t in frame_times]
    print(f"metrics-update, 200 frames: median {statistics.median(ms):.2f} ms, "
          f"p95 {sorted(ms)[int(len(ms) * 0.95)]:.2f} ms, max {max(ms):.2f} ms "
          f"(budget at 20 frames/s: 50 ms)")
    tms = [t * 1000 for t in table_times]
    print(f"payment-errors-update, 1,000 new rows, 5 runs: median {statistics.median(tms):.1f} ms, "
          f"max {max(tms):.1f} ms")
    oms = [t * 1000 for t in one_new]
    print(f"payment-errors-update, 1,000 rows with 1 new on top, 5 runs: "
          f"median {statistics.median(oms):.1f} ms, max {max(oms):.1f} ms")
    print(f"then settling to idle (repaint + idle wait): {repaint * 1000:.0f} ms")

if __name__ == "__main__":
    asyncio.run(main())
