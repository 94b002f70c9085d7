"""Group-commit writer: many requests' events, one transaction, answers after commit.

Requests put their events in a queue and wait. One writer thread takes
everything queued (up to ``max_batch``), applies it in one transaction, commits,
and only then wakes the waiting requests. While it commits, the next batch
queues up, so the commit rate adapts to the load by itself: one commit per
event when idle, hundreds of events per commit under load.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from nilemetrics.server.db import DatabaseUnavailable, describe_db_error, write_options
from nilemetrics.server.ingest import BatchOutcome, TrackedEvent, apply_batch

log = logging.getLogger(__name__)

T = TypeVar("T")

NOTIFY_CHANNEL = "nilemetrics_changes"


class EventRejected(Exception):
    """The database refused one event that passed validation (reported as a 4xx)."""


@dataclass(slots=True)
class _EventItem:
    event: TrackedEvent
    future: asyncio.Future[bool]


@dataclass(slots=True)
class _JobItem:
    job: Callable[[Connection], Any]
    future: asyncio.Future[Any]


def _is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class GroupCommitWriter:
    """Serialises all writes of one process through one thread and one connection."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch: int,
        on_commit: Callable[[BatchOutcome], None],
    ) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._on_commit = on_commit
        self._queue: deque[_EventItem | _JobItem] = deque()
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nm-writer")
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._notify = engine.dialect.name == "postgresql"
        self.batches = 0
        self.events = 0

    def start(self) -> None:
        """Start the writer loop on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="nm-writer")

    async def stop(self) -> None:
        """Write what is queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def submit(self, event: TrackedEvent) -> bool:
        """Queue one event; return once it is committed (False: a duplicate eventId)."""
        if self._closing:
            raise DatabaseUnavailable("server is shutting down")
        item = _EventItem(event, asyncio.get_running_loop().create_future())
        self._queue.append(item)
        self._wake.set()
        return await item.future

    async def submit_many(self, events: list[TrackedEvent]) -> list[bool]:
        """Queue events together (in order); return once all are committed."""
        if self._closing:
            raise DatabaseUnavailable("server is shutting down")
        loop = asyncio.get_running_loop()
        items = [_EventItem(event, loop.create_future()) for event in events]
        self._queue.extend(items)
        self._wake.set()
        return list(await asyncio.gather(*(item.future for item in items)))

    async def run_job(self, job: Callable[[Connection], T]) -> T:
        """Run ``job(conn)`` in the writer thread in its own write transaction."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_JobItem(job, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            head = self._queue[0]
            if isinstance(head, _JobItem):
                self._queue.popleft()
                try:
                    result = await loop.run_in_executor(self._executor, self._job, head.job)
                except Exception as exc:  # handed to the awaiting caller
                    if not head.future.done():
                        head.future.set_exception(_translate(exc))
                else:
                    if not head.future.done():
                        head.future.set_result(result)
                continue
            batch: list[_EventItem] = []
            while self._queue and len(batch) < self._max_batch:
                item = self._queue[0]
                if not isinstance(item, _EventItem):
                    break
                batch.append(item)
                self._queue.popleft()
            await self._write(loop, batch)

    async def _write(self, loop: asyncio.AbstractEventLoop, batch: list[_EventItem]) -> None:
        events = [item.event for item in batch]
        try:
            outcome = await loop.run_in_executor(self._executor, self._apply, events)
        except Exception as exc:
            if _is_unavailable(exc) or len(batch) == 1:
                error = _translate(exc)
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
                return
            # Something in the batch was refused: isolate it, keep the rest.
            log.warning("batch of %d failed (%s); retrying one by one", len(batch),
                        describe_db_error(exc))
            for item in batch:
                await self._write(loop, [item])
            return
        self.batches += 1
        self.events += len(events)
        for item, applied in zip(batch, outcome.applied, strict=True):
            if not item.future.done():
                item.future.set_result(applied)
        try:
            self._on_commit(outcome)
        except Exception:  # a push problem must never fail ingestion
            log.exception("on_commit callback failed")

    def _apply(self, events: list[TrackedEvent]) -> BatchOutcome:
        with self._engine.connect() as conn:
            write_options(conn)
            with conn.begin():
                outcome = apply_batch(conn, events)
                if self._notify and outcome.changed:
                    self._send_notify(conn, "errors" if outcome.payment_errors else "metrics")
            return outcome

    def _job(self, job: Callable[[Connection], T]) -> T:
        with self._engine.connect() as conn:
            write_options(conn)
            with conn.begin():
                result = job(conn)
                if self._notify:
                    self._send_notify(conn, "metrics")
            return result

    @staticmethod
    def _send_notify(conn: Connection, payload: str) -> None:
        # Delivered at commit to every process LISTENing on this database.
        conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": NOTIFY_CHANNEL, "p": payload})


def _translate(exc: BaseException) -> Exception:
    if isinstance(exc, DatabaseUnavailable | EventRejected):
        return exc
    if _is_unavailable(exc):
        log.warning("database unavailable: %s", describe_db_error(exc))
        return DatabaseUnavailable(describe_db_error(exc))
    if isinstance(exc, DBAPIError):
        log.warning("event refused by the database: %s", describe_db_error(exc))
        return EventRejected("the event was refused by the database")
    log.error("unexpected error while writing", exc_info=exc)
    return DatabaseUnavailable("internal error while writing")
