"""Live-metrics hub: coalesced pushes of live metrics and payment errors.

Changes only mark the hub dirty. One loop recomputes the numbers at most every
``push_interval`` and pushes a frame only when they differ from the last one.
Each subscriber (a WebSocket or a Socket.IO client) has a one-slot mailbox per
frame type: a slow client gets the latest frame, never a growing queue, and
never slows anyone else down.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import cached_property
from typing import Any

from nilemetrics.protocol.frames import encode_frame
from nilemetrics.protocol.names import WsEvent
from nilemetrics.protocol.pushed import Heartbeat, LiveMetrics, PaymentErrorRow

log = logging.getLogger(__name__)

#: Seconds one frame may take to go out. A client that stops reading fills the
#: socket's buffers; then a send (and a close) would wait forever, holding the
#: connection. After this long the send fails and the connection is dropped.
SEND_TIMEOUT = 10.0


class Frame:
    """One pushed frame: its event name and its WebSocket text, encoded once for all.

    ``data`` is the frame's body model (``nilemetrics.protocol.frames.FRAME_DATA``).
    """

    def __init__(self, event: WsEvent, data: Any) -> None:
        self.event = event
        self.text = encode_frame(event, data)

    @cached_property
    def data(self) -> Any:
        """The body as the WebSocket carries it (JSON types only), decoded once."""
        return json.loads(self.text)["data"]


#: How a subscriber's frames leave: awaits until the transport took the frame.
Send = Callable[[Frame], Awaitable[None]]


class Subscriber:
    """One connected dashboard; frames are sent by its own task through ``send``."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._pending: dict[str, Frame] = {}
        self._wake = asyncio.Event()

    def offer(self, item: Frame) -> None:
        """Replace any unsent frame of the same type with this one."""
        self._pending[item.event] = item
        self._wake.set()

    async def pump(self) -> None:
        """Send frames as they come, until sending fails (TimeoutError: the client is stuck)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            pending, self._pending = self._pending, {}
            for item in pending.values():
                async with asyncio.timeout(SEND_TIMEOUT):  # see Hub._run
                    await self._send(item)


class Hub:
    """Computes live numbers when something changed and fans them out."""

    def __init__(
        self,
        *,
        compute_metrics: Callable[[], Awaitable[LiveMetrics]],
        compute_errors: Callable[[], Awaitable[list[PaymentErrorRow]]],
        store_metrics: Callable[[LiveMetrics], Awaitable[None]] | None,
        push_interval: float,
        refresh_interval: float,
    ) -> None:
        self._compute_metrics = compute_metrics
        self._compute_errors = compute_errors
        self._store_metrics = store_metrics
        self._push_interval = push_interval
        self._refresh_interval = refresh_interval
        self.subscribers: set[Subscriber] = set()
        self._metrics_dirty = True
        self._errors_dirty = True
        self._wake = asyncio.Event()
        self._last_push = 0.0
        self._last_key: str | None = None
        self.metrics_frame: Frame | None = None
        self.errors_frame: Frame | None = None
        self._reading = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        #: metrics-update frames pushed so far (coalescing is measured by it).
        self.pushes = 0
        #: Whether the last refresh failed (its first failure is logged in full).
        self._failing = False

    def start(self) -> None:
        """Start the push loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="nm-hub")

    async def stop(self) -> None:
        """Stop the push loop."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def mark_dirty(self, *, metrics: bool = True, errors: bool = False) -> None:
        """Something changed: recompute soon (coalesced with other changes)."""
        self._metrics_dirty = self._metrics_dirty or metrics
        self._errors_dirty = self._errors_dirty or errors
        self._wake.set()

    def broadcast(self, item: Frame) -> None:
        """Offer a frame to every subscriber."""
        for sub in self.subscribers:
            sub.offer(item)

    def heartbeat(self, timestamp: datetime, interval: float) -> None:
        """Send ``metrics-heartbeat`` (one per cleanup tick) with the tick interval."""
        data = Heartbeat(timestamp=timestamp, interval_seconds=interval)
        self.broadcast(Frame(WsEvent.METRICS_HEARTBEAT, data))

    async def subscribe(self, send: Send) -> Subscriber:
        """Register a subscriber sending through ``send``; it gets the current numbers at once.

        Its frames flow once its ``pump()`` runs.
        """
        sub = Subscriber(send)
        if self.metrics_frame is None or self.errors_frame is None:
            async with self._reading:
                # Checked again: the loop may have read them while we waited.
                await self._refresh(metrics=self.metrics_frame is None,
                                    errors=self.errors_frame is None)
        if self.metrics_frame is not None:
            sub.offer(self.metrics_frame)
        if self.errors_frame is not None:
            sub.offer(self.errors_frame)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        """Forget a subscriber."""
        self.subscribers.discard(sub)

    async def _run(self) -> None:
        while True:
            try:
                # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that
                # meets a wait just finished, and stop() then waited for this loop forever.
                async with asyncio.timeout(self._refresh_interval):
                    await self._wake.wait()
            except TimeoutError:
                # Time alone changes things: sessions leave the live window, errors
                # age out of the last hour, another process (cleanup, forget on
                # SQLite) changed rows. Look again; only a difference is pushed.
                self._metrics_dirty = True
                self._errors_dirty = True
            self._wake.clear()
            delay = self._last_push + self._push_interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            metrics, errors = self._metrics_dirty, self._errors_dirty
            self._metrics_dirty = self._errors_dirty = False
            self._last_push = time.monotonic()
            try:
                async with self._reading:
                    await self._refresh(metrics=metrics, errors=errors)
            except Exception as exc:
                # In full the first time (a bug shows its traceback), then one line per
                # failure while it lasts (a database outage is logged by the outage log).
                if self._failing:
                    log.warning("could not refresh live numbers: %s", exc)
                else:
                    log.warning("could not refresh live numbers", exc_info=exc)
                self._failing = True
                self._metrics_dirty |= metrics
                self._errors_dirty |= errors
            else:
                if self._failing:
                    log.info("live numbers refreshed again")
                self._failing = False

    async def _refresh(self, *, metrics: bool, errors: bool) -> None:
        """Read what is asked, and push whatever differs from the last frame (under the lock).

        One read at a time: two overlapping reads (a first subscriber's and the
        loop's) could finish in either order, leave the older numbers as the "last"
        frame, and the newer ones, already sent, would then be pushed again. Every
        change is pushed, whoever read it: subscribers already there must not miss it.
        """
        if metrics:
            body = await self._compute_metrics()
            # The numbers, not the time they were read: an unchanged snapshot is not pushed.
            key = json.dumps(body.model_dump(mode="json", exclude={"last_updated"}),
                             sort_keys=True)
            if key != self._last_key:
                self._last_key = key
                self.metrics_frame = Frame(WsEvent.METRICS_UPDATE, body)
                self.pushes += 1
                self.broadcast(self.metrics_frame)
                if self._store_metrics is not None:
                    await self._store_metrics(body)
        if errors:
            rows = await self._compute_errors()
            item = Frame(WsEvent.PAYMENT_ERRORS_UPDATE, rows)
            if self.errors_frame is None or item.text != self.errors_frame.text:
                self.errors_frame = item
                self.broadcast(item)
