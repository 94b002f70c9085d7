"""Group-commit writer: many requests' events, one transaction, answers after commit.

Requests put their events in a queue and wait. The writer takes everything
queued (up to ``max_batch``), applies it in one transaction, commits, and only
then wakes the waiting requests. While it commits, the next batch queues up, so
the commit rate adapts to the load by itself: one commit per event when idle,
hundreds of events per commit under load.

Batches are applied in a child process by default. In a thread, the writer's
Python work and the HTTP side took turns on the GIL: after every call into the
database driver the writer waited for the event loop to let go, so batches took
three times their CPU time and requests waited for them. Rare maintenance jobs
(cleanup, erasure) still run in a thread here, serialised with the batches.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from nilemetrics.server.db import (
    DatabaseUnavailable,
    describe_db_error,
    make_engine,
    write_options,
)
from nilemetrics.server.ingest import BatchOutcome, TrackedEvent, apply_batch

log = logging.getLogger(__name__)

T = TypeVar("T")

NOTIFY_CHANNEL = "nilemetrics_changes"

#: PostgreSQL session settings of the writer process's connection (libpq ``options``).
#: Every statement of a batch finds its rows by key, a few dozen at a time, so index
#: probes are always right; but the planner's statistics lag behind fast-growing
#: tables (a fresh database, a burst of new sessions, autovacuum late or off), and
#: then it chose a sequential scan of all sessions and *bitmap* scans of the open-visits
#: index. A bitmap scan never marks the index entries of closed visits as dead (a
#: plain index scan does), so every lookup revisited each session's whole history:
#: 1.8 ms instead of 0.3 ms to load a batch of 25 sessions after a few seconds of load.
#: Only the writer process's connection gets these: reports, cleanup and erasure
#: run elsewhere and are planned normally.
WRITER_PG_OPTIONS = "-c enable_seqscan=off -c enable_bitmapscan=off"


class EventRejected(Exception):
    """The database refused one event that passed validation (reported as a 4xx)."""


class _BatchRefused(Exception):
    """The writer process's database refused something in a batch (to be isolated)."""


@dataclass(slots=True)
class _EventItem:
    event: TrackedEvent
    future: asyncio.Future[bool]


@dataclass(slots=True)
class _JobItem:
    job: Callable[[Connection], Any]
    future: asyncio.Future[Any]
    notify: bool = True


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
        process_url: str | None = None,
        busy_timeout: float = 5.0,
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
        self._process = (
            _WriterProcess(process_url, busy_timeout) if process_url is not None else None
        )
        self.batches = 0
        self.events = 0

    async def start(self) -> None:
        """Start the writer process (if any) and the writer loop on the running loop."""
        if self._process is not None:
            await asyncio.to_thread(self._process.start)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="nm-writer")

    async def stop(self) -> None:
        """Write what is queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._process is not None:
            await asyncio.to_thread(self._process.close)
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
        # Answer only once every event is settled: a refused one must not answer the
        # request while its batch-mates are still being written.
        results = await asyncio.gather(*(item.future for item in items), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [bool(result) for result in results]

    async def run_job(self, job: Callable[[Connection], T], *, notify: bool = True) -> T:
        """Run ``job(conn)`` in the writer thread in its own write transaction.

        Jobs and batches take turns, so a job never waits for a batch's lock.
        ``notify``: tell other server processes (PostgreSQL) that data changed.
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append(_JobItem(job, future, notify))
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
                    result = await loop.run_in_executor(
                        self._executor, self._job, head.job, head.notify
                    )
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
            if self._process is not None:
                outcome = await self._process.apply(loop, events)
            else:
                outcome = await loop.run_in_executor(self._executor, self._apply, events)
        except Exception as exc:
            unavailable = _is_unavailable(exc) or isinstance(exc, DatabaseUnavailable)
            if unavailable or len(batch) == 1:
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
        return _apply_in_transaction(self._engine, events, self._notify)

    def _job(self, job: Callable[[Connection], T], notify: bool) -> T:
        with self._engine.connect() as conn:
            write_options(conn)
            with conn.begin():
                result = job(conn)
                if self._notify and notify:
                    self._send_notify(conn, "metrics")
            return result

    @staticmethod
    def _send_notify(conn: Connection, payload: str) -> None:
        _send_notify(conn, payload)


def _send_notify(conn: Connection, payload: str) -> None:
    # Delivered at commit to every process LISTENing on this database.
    conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": NOTIFY_CHANNEL, "p": payload})


def _apply_in_transaction(
    engine: Engine, events: list[TrackedEvent], notify: bool
) -> BatchOutcome:
    """Apply one batch in one write transaction (in the writer thread or process)."""
    with engine.connect() as conn:
        write_options(conn)
        with conn.begin():
            outcome = apply_batch(conn, events)
            if notify and outcome.changed:
                _send_notify(conn, "errors" if outcome.payment_errors else "metrics")
        return outcome


def _child_main(pipe: Pipe, url: str, busy_timeout: float) -> None:
    """The writer process: apply each batch it is sent, answer how it went."""
    # Ctrl-C goes to the whole process group; the server shuts this process down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    engine = make_engine(url, busy_timeout=busy_timeout, pg_options=WRITER_PG_OPTIONS)
    notify = engine.dialect.name == "postgresql"
    pipe.send(("ready",))
    while True:
        try:
            events = pipe.recv()
        except (EOFError, OSError):
            break
        if events is None:
            break
        try:
            outcome = _apply_in_transaction(engine, events, notify)
        except Exception as exc:
            if _is_unavailable(exc):
                kind = "unavailable"
            elif isinstance(exc, DBAPIError):
                kind = "refused"
            else:
                kind = "internal"
                log.error("unexpected error while writing", exc_info=exc)
            pipe.send(("error", kind, describe_db_error(exc)))
        else:
            pipe.send(("ok", outcome.applied, outcome.payment_errors))
    engine.dispose()


class _WriterProcess:
    """A child process that owns the write connection; one batch in flight at a time."""

    def __init__(self, url: str, busy_timeout: float) -> None:
        self._url = url
        self._busy_timeout = busy_timeout
        self._pipe: Pipe | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process and wait until its database engine is ready (blocking).

        A fresh interpreter (never a fork of this threaded process), started as
        ``python -m nilemetrics.server.writer FD`` so that it does not re-import
        whatever script started the server. The URL travels over the socket, not
        the command line, where ``ps`` would show its password.
        """
        ours, theirs = socket.socketpair()
        proc = subprocess.Popen(
            [sys.executable, "-m", "nilemetrics.server.writer", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        pipe = Pipe(ours.detach())
        pipe.send((self._url, self._busy_timeout))
        if not pipe.poll(60):
            proc.kill()
            raise DatabaseUnavailable("the writer process did not start")
        try:
            pipe.recv()
        except (EOFError, OSError):
            proc.wait(5)
            raise DatabaseUnavailable("the writer process failed to start") from None
        self._pipe, self._proc = pipe, proc

    def close(self) -> None:
        """Ask the process to finish, then make sure it is gone (blocking)."""
        if self._pipe is not None:
            try:
                self._pipe.send(None)
            except OSError:
                pass
        if self._proc is not None:
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        if self._pipe is not None:
            self._pipe.close()
        self._pipe = self._proc = None

    async def apply(
        self, loop: asyncio.AbstractEventLoop, events: list[TrackedEvent]
    ) -> BatchOutcome:
        """Send one batch and wait (without blocking the loop) for its outcome."""
        if self._proc is None or self._proc.poll() is not None:
            # A crashed writer is replaced; the batch it died on was answered 503.
            log.warning("writer process not running; starting a new one")
            await asyncio.to_thread(self.close)
            await asyncio.to_thread(self.start)
        pipe = self._pipe
        assert pipe is not None
        answer: asyncio.Future[Any] = loop.create_future()

        def readable() -> None:
            loop.remove_reader(pipe.fileno())
            try:
                answer.set_result(pipe.recv())
            except (EOFError, OSError) as exc:
                answer.set_exception(DatabaseUnavailable(f"writer process died: {exc!r}"))

        loop.add_reader(pipe.fileno(), readable)
        try:
            pipe.send(events)
        except OSError as exc:
            loop.remove_reader(pipe.fileno())
            raise DatabaseUnavailable(f"writer process unreachable: {exc!r}") from exc
        message = await answer
        if message[0] == "ok":
            return BatchOutcome(applied=list(message[1]), payment_errors=message[2])
        _, kind, reason = message
        if kind == "unavailable":
            raise DatabaseUnavailable(reason)
        if kind == "refused":
            raise _BatchRefused(reason)
        raise DatabaseUnavailable("internal error while writing")


def _translate(exc: BaseException) -> Exception:
    if isinstance(exc, DatabaseUnavailable | EventRejected):
        return exc
    if isinstance(exc, _BatchRefused):
        log.warning("event refused by the database: %s", exc)
        return EventRejected("the event was refused by the database")
    if _is_unavailable(exc):
        log.warning("database unavailable: %s", describe_db_error(exc))
        return DatabaseUnavailable(describe_db_error(exc))
    if isinstance(exc, DBAPIError):
        log.warning("event refused by the database: %s", describe_db_error(exc))
        return EventRejected("the event was refused by the database")
    log.error("unexpected error while writing", exc_info=exc)
    return DatabaseUnavailable("internal error while writing")


def _child_entry() -> None:
    """``python -m nilemetrics.server.writer FD``: the writer process's main."""
    pipe = Pipe(int(sys.argv[1]))
    url, busy_timeout = pipe.recv()
    _child_main(pipe, url, busy_timeout)


if __name__ == "__main__":
    _child_entry()
