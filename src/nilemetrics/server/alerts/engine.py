"""The alert evaluator and the notification delivery loop, as one object with start/stop.

Self-contained: it needs the engine, the rules, a clock and a few numbers, and no
other part of the server, so that it can run in every process (as now: the
database locks make each tick and each delivery happen once) or later under a
leader process only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy import Engine, text

from nilemetrics.config import Settings
from nilemetrics.server.alerts.delivery import Sender, send_apprise, warm_up
from nilemetrics.server.alerts.episodes import TickResult, evaluate, rule_values
from nilemetrics.server.alerts.outbox import Delivery, deliver_next
from nilemetrics.server.alerts.rules import AlertsConfig, load_rules
from nilemetrics.server.clock import Clock
from nilemetrics.server.db import describe_db_error, write_options
from nilemetrics.server.notify import NOTIFY_CHANNEL

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Most notifications sent in one go before the loop looks at the clock again.
_BURST = 100
#: Least time between two "evaluation failed" log lines.
_LOG_EVERY = 60.0


class AlertEngine:
    """Evaluates the rules every ``interval`` seconds and delivers what they queue."""

    def __init__(
        self,
        config: AlertsConfig,
        engine: Engine,
        clock: Clock,
        *,
        live_window: float,
        interval: float,
        send: Sender = send_apprise,
        on_change: Callable[[], None] | None = None,
        notify_channel: str | None = None,
    ) -> None:
        self.config = config
        self._engine = engine
        self._clock = clock
        self._live_window = live_window
        self.interval = interval
        self._send = send
        self._on_change = on_change
        self._notify_channel = notify_channel
        # One thread each: a slow notification service never delays an evaluation.
        self._eval_pool = ThreadPoolExecutor(1, thread_name_prefix="nm-alerts-eval")
        self._send_pool = ThreadPoolExecutor(1, thread_name_prefix="nm-alerts-send")
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_log = 0.0
        #: This process's counts (exported on /metrics).
        self.ticks = 0
        self.skipped_ticks = 0
        self.failed_ticks = 0
        self.sent: Counter[str] = Counter()
        self.failed_sends = 0
        self.last_result: TickResult | None = None

    async def start(self) -> None:
        """Start evaluating and delivering (Apprise's plugins load in the background)."""
        loop = asyncio.get_running_loop()
        loop.run_in_executor(self._send_pool, warm_up)
        self._tasks = [
            loop.create_task(self._evaluate_loop(), name="nm-alerts-evaluate"),
            loop.create_task(self._deliver_loop(), name="nm-alerts-deliver"),
        ]

    async def stop(self) -> None:
        """Stop both loops; a send under way is left to finish in its thread."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        # Not waited for: a notification service that hangs must not hold up shutdown.
        # Its row is still locked (PostgreSQL) or pending, so it is sent again later.
        self._eval_pool.shutdown(wait=False, cancel_futures=True)
        self._send_pool.shutdown(wait=False, cancel_futures=True)

    async def _run(self, pool: ThreadPoolExecutor, work: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(pool, work)

    def tick(self) -> TickResult:
        """One evaluation in its own write transaction (blocking)."""
        now = self._clock.now()
        values = None
        if self._engine.dialect.name == "sqlite":
            # Counted in a read transaction, which never holds up the writer (WAL);
            # only the short state update takes SQLite's write lock. (PostgreSQL reads
            # under the evaluation lock instead: there, reading blocks no writer.)
            with self._engine.connect() as conn, conn.begin():
                values = rule_values(conn, self.config, now, self._live_window)
        with self._engine.connect() as conn:
            write_options(conn)
            with conn.begin():
                result = evaluate(conn, self.config, now, self._live_window, values)
                if result.changed and self._notify_channel and conn.dialect.name == "postgresql":
                    # Other processes' dashboards show firing alerts in their header.
                    conn.execute(text("SELECT pg_notify(:c, 'metrics')"),
                                 {"c": self._notify_channel})
        return result

    async def _evaluate_loop(self) -> None:
        while True:
            try:
                result = await self._run(self._eval_pool, self.tick)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failed_ticks += 1
                self._warn("alert evaluation failed: %s", describe_db_error(exc))
            else:
                self.last_result = result
                if result.skipped:
                    self.skipped_ticks += 1
                else:
                    self.ticks += 1
                if result.queued:
                    self._wake.set()
                if result.changed and self._on_change is not None:
                    self._on_change()
            await asyncio.sleep(self.interval)

    def _warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY:
            self._last_log = now
            log.warning(message, *args)

    def deliver(self) -> Delivery | None:
        """Send the next due notification, if any (blocking)."""
        return deliver_next(self._engine, self.config, self._clock.now, self._send,
                            self.interval)

    async def _deliver_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):  # see Hub._run
                    await self._wake.wait()
            self._wake.clear()
            for _ in range(_BURST):
                try:
                    done = await self._run(self._send_pool, self.deliver)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._warn("alert delivery failed: %s", describe_db_error(exc))
                    break
                if done is None:
                    break
                self._record(done)

    def _record(self, done: Delivery) -> None:
        where = f'notification #{done.outbox_id} ({done.kind} of rule "{done.rule}") ' \
                f'to "{done.notifier}"'
        if done.status == "sent":
            self.sent[done.kind] += 1
            log.info("alert %s sent", where)
        elif done.status == "dropped":
            log.warning("alert %s dropped: %s", where, done.error)
        else:
            self.failed_sends += 1
            log.warning("alert %s failed (attempt %d): %s; next try in %.0fs", where,
                        done.attempts, done.error, done.retry_in or 0)


def alert_engine_for(
    settings: Settings, engine: Engine, clock: Clock, on_change: Callable[[], None] | None
) -> AlertEngine | None:
    """The alert engine ``settings.alerts`` asks for, or None (blocking: reads the rules).

    Raises :class:`~nilemetrics.server.alerts.rules.AlertsFileError` for a bad file.
    """
    if settings.alerts is None:
        return None
    return AlertEngine(
        load_rules(settings.alerts), engine, clock,
        live_window=settings.live_window, interval=settings.alerts_interval,
        on_change=on_change, notify_channel=NOTIFY_CHANNEL,
    )
