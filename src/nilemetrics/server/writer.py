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

A request's events are one unit: all of them are committed, or none. When the
database refuses something in a batch, the batch's requests are retried one
request at a time, so a bad request fails alone and takes nobody else's events
down, and no request is answered "failed" while some of its events were stored.

Requests are queued per client (see :mod:`nilemetrics.server.fair_queue`) and
batches are built round-robin across clients, so one client's flood of big
requests does not stand between another client's single event and the database.

Waiting is bounded, so a hung database (PostgreSQL stopped, a frozen disk, a
SQLite lock held elsewhere) cannot pile up memory or write stale work later:

- the queue holds at most ``max_queued`` events (a job counts as one); beyond
  that a submission fails at once (503); one client may hold at most
  ``client_max_queued`` of them, beyond that its submissions fail at once (429)
  while others still get in;
- a request not answered within ``write_timeout`` gets 503. Events still queued
  are dropped from the queue. A batch the database is working on is abandoned:
  the writer rolls it back instead of committing it (see :class:`_CommitGate`).
  Only a batch whose commit has begun cannot be abandoned; its requests wait
  for the true outcome, so a 503 never stands for something later committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import mmap
import os
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import count as counter
from multiprocessing.connection import Connection as Pipe
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from nilemetrics.server.db import (
    DatabaseUnavailable,
    describe_db_error,
    make_engine,
    write_options,
)
from nilemetrics.server.fair_queue import FairQueue
from nilemetrics.server.ingest import BatchOutcome, TrackedEvent, apply_batch

log = logging.getLogger(__name__)

T = TypeVar("T")

NOTIFY_CHANNEL = "nilemetrics_changes"

#: Most events of a turn that may share a batch with other clients' turns. Bigger
#: turns (a client with big requests or many queued) are written in batches of
#: their own kind, so a client with a few events never waits for a flooder's
#: 500-event transaction on top of the batch in flight. A batch of 64 page-visits
#: takes ~6 ms in the writer, one of 500 ~45 ms.
SMALL_TURN = 64

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

REFUSED = "the event was refused by the database"


class BatchObserver(Protocol):
    """Told of every batch the writer committed or failed (the /metrics counters)."""

    def committed(self, events: list[TrackedEvent], outcome: BatchOutcome,
                  seconds: float) -> None:
        """A batch was committed ``seconds`` after it was handed to the database."""

    def failed(self, exc: BaseException) -> None:
        """A batch failed (it is then answered, or retried request by request)."""


class EventRejected(Exception):
    """The database refused an event that passed validation (reported as a 4xx).

    ``index``: the refused event's position in its request, when it was found.
    """

    def __init__(self, message: str = REFUSED, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class WriterBusy(DatabaseUnavailable):
    """The writer's queue is full: the database is not keeping up (503, retry later)."""


class ClientOverShare(Exception):
    """This client already has its share of the writer's queue waiting (429, retry later)."""


class WriteTimedOut(DatabaseUnavailable):
    """A request's events were not written in time; they never will be (503)."""


class StorageFull(DatabaseUnavailable):
    """The database's disk is full: nothing was stored (503 naming the cause)."""


class _BatchRefused(Exception):
    """The writer process's database refused something in a batch (to be isolated)."""


class _Abandoned(Exception):
    """The server gave up on the batch before its commit; it was rolled back."""


@dataclass(slots=True, eq=False)
class _Group:
    """One request's events, written together or not at all."""

    events: list[TrackedEvent]
    future: asyncio.Future[list[bool]]
    client: str = ""
    #: Arrival order (a job waits for the requests queued before it).
    order: int = 0
    timer: asyncio.TimerHandle | None = None
    #: The batch it was last handed to the database with (0: still queued).
    seq: int = 0


@dataclass(slots=True, eq=False)
class _JobItem:
    job: Callable[[Connection], Any]
    future: asyncio.Future[Any]
    notify: bool = True
    #: Requests that arrived before it (order below this) are written first.
    mark: int = 0
    timer: asyncio.TimerHandle | None = None
    running: bool = False


_RUNNING, _COMMITTING, _ABANDONED = 0, 1, 2
_GATE = struct.Struct("qq")


class _CommitGate:
    """Decides, once per batch, between the writer committing it and the server giving up.

    Batch number and phase live in a few bytes the writer process maps too; a
    lock around each transition makes the two exclusive. The writer calls
    :meth:`commit` right before COMMIT and rolls back if it says no; the server
    calls :meth:`abandon` when a request's time is up, and may answer 503 only if
    it says yes. Whichever comes first wins.
    """

    def __init__(self, fd: int | None = None) -> None:
        self.fd = fd
        if fd is None:
            self._map = mmap.mmap(-1, _GATE.size)
        else:
            self._map = mmap.mmap(fd, _GATE.size)
        self._thread_lock = threading.Lock()

    @classmethod
    def shared(cls) -> _CommitGate:
        """A gate in an unlinked file whose descriptor a child process can inherit."""
        handle = tempfile.TemporaryFile()
        fd = os.dup(handle.fileno())
        handle.close()
        os.ftruncate(fd, _GATE.size)
        return cls(fd)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if self.fd is None:
            with self._thread_lock:
                yield
            return
        # A record lock excludes the other process (never another thread of this one:
        # only the event loop's thread uses the gate on the server's side).
        fcntl.lockf(self.fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def open(self, seq: int) -> None:
        """Batch ``seq`` is about to be handed to the database."""
        with self._locked():
            _GATE.pack_into(self._map, 0, seq, _RUNNING)

    def commit(self, seq: int) -> bool:
        """Writer side: may batch ``seq`` be committed? (After yes it can't be abandoned.)"""
        with self._locked():
            current, phase = _GATE.unpack_from(self._map, 0)
            if current == seq and phase == _ABANDONED:
                return False
            _GATE.pack_into(self._map, 0, seq, _COMMITTING)
            return True

    def abandon(self, seq: int) -> bool:
        """Server side: give up on batch ``seq`` unless its commit has begun."""
        with self._locked():
            current, phase = _GATE.unpack_from(self._map, 0)
            if current != seq or phase != _RUNNING:
                return False
            _GATE.pack_into(self._map, 0, seq, _ABANDONED)
            return True

    def close(self) -> None:
        """Release the mapping (and the file)."""
        self._map.close()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _is_disk_full(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None) or exc
    if getattr(orig, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return True
    return getattr(orig, "sqlstate", None) == "53100"  # PostgreSQL: disk_full


class _WalKeeper:
    """SQLite on a small disk: fold the WAL back before it fills the disk.

    The WAL is folded back every 10,000 pages (~40 MB, see db.py): on a disk
    with less room than that it filled the disk, and then even folding it back
    failed (that needs room for the database file to grow), so the server, and
    a restarted one, accepted nothing. After each commit the writer compares the
    WAL's size with the room left; once the WAL is the larger it is folded back
    and truncated while there is still room to do so. On a roomy disk that
    never happens. The writer also folds it back when it starts (a WAL left by
    a full disk, once room was made) and once when a write finds the disk full.
    """

    def __init__(self, engine: Engine) -> None:
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        self.wal = f"{database}-wal" if database and database != ":memory:" else None

    def after_commit(self, engine: Engine) -> None:
        """Fold the WAL back if it takes more than the room left on its disk."""
        if self.wal is None:
            return
        try:
            size = os.stat(self.wal).st_size
            disk = os.statvfs(self.wal)
        except OSError:
            return
        if size > disk.f_bavail * disk.f_frsize:
            log.warning("disk nearly full (WAL %d bytes, %d free): folding the WAL back",
                        size, disk.f_bavail * disk.f_frsize)
            self.checkpoint(engine)

    def checkpoint(self, engine: Engine) -> bool:
        """Copy the WAL into the database and truncate it; False if that failed."""
        if self.wal is None:
            return False
        try:
            with engine.connect() as conn:
                # The raw connection runs in autocommit: no transaction around the pragma.
                raw: Any = conn.connection.dbapi_connection
                busy = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except DBAPIError as exc:
            log.warning("could not fold the SQLite WAL back: %s", describe_db_error(exc))
            return False
        except sqlite3.Error as exc:
            log.warning("could not fold the SQLite WAL back: %s", exc)
            return False
        return bool(busy == 0)


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
        write_timeout: float = 5.0,
        max_queued: int = 10_000,
        client_max_queued: int | None = None,
    ) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._on_commit = on_commit
        self._write_timeout = write_timeout
        self._max_queued = max_queued
        self._client_max_queued = client_max_queued or max_queued
        # A client's turn is half a batch: a whole batch request (500 events) at
        # the default batch size, and a batch holds at least two clients' turns.
        self._groups: FairQueue[_Group] = FairQueue(
            quantum=max(1, max_batch // 2), small=SMALL_TURN
        )
        self._jobs: deque[_JobItem] = deque()
        self._order = counter(1)
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nm-writer")
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._notify = engine.dialect.name == "postgresql"
        self._gate = _CommitGate.shared() if process_url is not None else _CommitGate()
        self._process = (
            _WriterProcess(process_url, busy_timeout, self._gate)
            if process_url is not None
            else None
        )
        self._wal = _WalKeeper(engine)
        self._seq = 0
        self._in_flight: list[_Group] = []
        self.batches = 0
        self.events = 0
        #: Told of each batch (metrics); set after construction, None: nobody listens.
        self.observer: BatchObserver | None = None

    async def start(self) -> None:
        """Start the writer process (if any) and the writer loop on the running loop."""
        if self._process is not None:
            await asyncio.to_thread(self._process.start)
        else:
            await asyncio.get_running_loop().run_in_executor(
                self._executor, self._wal.checkpoint, self._engine
            )
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
        self._gate.close()

    @property
    def queue_depth(self) -> int:
        """Events (and jobs) waiting for the writer."""
        return self._queued

    @property
    def _queued(self) -> int:
        """Events (and jobs) in the queue, not yet handed to the database."""
        return self._groups.events + len(self._jobs)

    def client_full(self, client: str) -> bool:
        """Whether ``client`` already has its whole share of the queue waiting.

        Not when the whole queue is full: that is the database not keeping up (503).
        """
        return (
            self._groups.queued(client) >= self._client_max_queued
            and self._queued < self._max_queued
        )

    async def submit(self, event: TrackedEvent, client: str = "") -> bool:
        """Queue one event of ``client``; return once it is committed (False: a duplicate)."""
        return (await self._submit([event], client))[0]

    async def submit_many(self, events: list[TrackedEvent], client: str = "") -> list[bool]:
        """Queue events of ``client`` together (in order); return once all are committed.

        All or nothing: if any of them cannot be written, none is.
        """
        return await self._submit(events, client)

    def _admit(self, count: int, client: str | None = None) -> None:
        if self._closing:
            raise DatabaseUnavailable("server is shutting down")
        if self._queued + count > self._max_queued:
            raise WriterBusy(
                f"the writer's queue is full ({self._queued} waiting): "
                "the database is not keeping up"
            )
        if client is not None and (
            self._groups.queued(client) + count > self._client_max_queued
        ):
            raise ClientOverShare(
                f"{self._groups.queued(client)} events of this client are waiting already"
            )

    async def _submit(self, events: list[TrackedEvent], client: str) -> list[bool]:
        self._admit(len(events), client)
        loop = asyncio.get_running_loop()
        group = _Group(events, loop.create_future(), client, next(self._order))
        group.timer = loop.call_later(self._write_timeout, self._expire, group)
        self._groups.push(client, group, len(events))
        self._wake.set()
        try:
            return await group.future
        except asyncio.CancelledError:
            self._drop(group)  # nobody waits for it any more: never write it later
            raise
        finally:
            group.timer.cancel()

    async def run_job(self, job: Callable[[Connection], T], *, notify: bool = True) -> T:
        """Run ``job(conn)`` in the writer thread in its own write transaction.

        Jobs and batches take turns, so a job never waits for a batch's lock.
        ``notify``: tell other server processes (PostgreSQL) that data changed.
        A job still queued after ``write_timeout`` is dropped (503); a running one
        is waited for.
        """
        self._admit(1)
        loop = asyncio.get_running_loop()
        item = _JobItem(job, loop.create_future(), notify, next(self._order))
        item.timer = loop.call_later(self._write_timeout, self._expire_job, item)
        self._jobs.append(item)
        self._wake.set()
        try:
            result: T = await item.future
            return result
        finally:
            item.timer.cancel()

    def _timed_out(self) -> WriteTimedOut:
        return WriteTimedOut(
            f"not written within {self._write_timeout:g} s: the database is not keeping up"
        )

    def _drop(self, group: _Group) -> bool:
        """Take a group out of the queue if it is still there (never handed over)."""
        if group.seq != 0:
            return False
        return self._groups.remove(group.client, group)

    def _expire(self, group: _Group) -> None:
        """A request's time is up: answer 503 unless its events may yet be committed."""
        if group.future.done():
            return
        if self._drop(group):
            group.future.set_exception(self._timed_out())
            return
        if group.seq and group.seq == self._seq and self._gate.abandon(group.seq):
            # The writer will roll this batch back: none of its requests is stored.
            for member in self._in_flight:
                if not member.future.done():
                    member.future.set_exception(self._timed_out())
        # Otherwise its commit is under way: the answer waits for the outcome.

    def _expire_job(self, item: _JobItem) -> None:
        if item.future.done() or item.running:
            return
        try:
            self._jobs.remove(item)
        except ValueError:
            return
        item.future.set_exception(self._timed_out())

    def _job_due(self) -> bool:
        """The first job may run: every request that arrived before it has been taken."""
        mark = self._jobs[0].mark
        return all(group.order > mark for group in self._groups.heads())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._groups and not self._jobs:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._jobs and self._job_due():
                head = self._jobs.popleft()
                head.running = True
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
            # Whole requests only: a request's events never straddle two batches.
            await self._write(loop, self._groups.take(self._max_batch))

    async def _write(self, loop: asyncio.AbstractEventLoop, batch: list[_Group]) -> None:
        now = loop.time()
        for group in batch:
            # Its time ran out while it was away from the queue (being isolated).
            if group.timer is not None and group.timer.when() <= now and not group.future.done():
                group.future.set_exception(self._timed_out())
        batch = [group for group in batch if not group.future.done()]
        if not batch:
            return
        events = [event for group in batch for event in group.events]
        self._seq += 1
        seq = self._seq
        self._gate.open(seq)
        for group in batch:
            group.seq = seq
        self._in_flight = batch
        started = loop.time()
        try:
            if self._process is not None:
                outcome = await self._process.apply(loop, events, seq)
            else:
                outcome = await loop.run_in_executor(self._executor, self._apply, events, seq)
        except _Abandoned:
            return  # its requests were answered when it was abandoned
        except Exception as exc:
            if self.observer is not None:
                self.observer.failed(exc)
            await self._failed(loop, batch, exc)
            return
        finally:
            self._in_flight = []
        self.batches += 1
        self.events += len(events)
        start = 0
        for group in batch:
            end = start + len(group.events)
            if not group.future.done():
                group.future.set_result(outcome.applied[start:end])
            else:  # the gate makes this impossible; say so loudly if it ever is not
                log.error("a batch was committed after one of its requests was answered")
            start = end
        try:
            self._on_commit(outcome)
            if self.observer is not None:
                self.observer.committed(events, outcome, loop.time() - started)
        except Exception:  # a push problem must never fail ingestion
            log.exception("on_commit callback failed")

    async def _failed(
        self, loop: asyncio.AbstractEventLoop, batch: list[_Group], exc: Exception
    ) -> None:
        """A batch was rolled back: answer, or retry its requests one at a time."""
        unavailable = _is_unavailable(exc) or isinstance(exc, DatabaseUnavailable)
        refused = not unavailable and (
            isinstance(exc, _BatchRefused) or isinstance(exc, DBAPIError)
        )
        if refused and len(batch) > 1:
            # Something in the batch was refused: isolate its request, keep the rest.
            log.warning("batch of %d requests refused (%s); retrying request by request",
                        len(batch), describe_db_error(exc))
            for group in batch:
                await self._write(loop, [group])
            return
        if refused:
            group = batch[0]
            log.warning("event refused by the database: %s", describe_db_error(exc))
            error: Exception = EventRejected(index=await self._find_refused(loop, group))
        else:
            error = _translate(exc)
        for group in batch:
            if not group.future.done():
                group.future.set_exception(error)

    async def _find_refused(self, loop: asyncio.AbstractEventLoop, group: _Group) -> int | None:
        """Which of a refused request's events the database refuses (None: not found)."""
        if len(group.events) == 1:
            return 0
        try:
            if self._process is not None:
                return await self._process.find_refused(loop, group.events)
            return await loop.run_in_executor(
                self._executor, _first_refused, self._engine, group.events
            )
        except Exception as exc:
            log.warning("could not tell which event was refused: %s", exc)
            return None

    def _apply(self, events: list[TrackedEvent], seq: int) -> BatchOutcome:
        return _apply_in_transaction(
            self._engine, events, self._notify, self._gate, seq, self._wal
        )

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
    engine: Engine,
    events: list[TrackedEvent],
    notify: bool,
    gate: _CommitGate,
    seq: int,
    wal: _WalKeeper,
) -> BatchOutcome:
    """Apply one batch in one write transaction (in the writer thread or process).

    Raises :class:`_Abandoned` (after rolling back) if the server gave up on it.
    SQLite: a full disk gets one more try after folding the WAL back.
    """
    try:
        outcome = _apply_once(engine, events, notify, gate, seq)
    except OperationalError as exc:
        if wal.wal is None or not _is_disk_full(exc) or not wal.checkpoint(engine):
            raise
        log.warning("disk full; WAL folded back, writing the batch again")
        outcome = _apply_once(engine, events, notify, gate, seq)
    wal.after_commit(engine)
    return outcome


def _apply_once(
    engine: Engine, events: list[TrackedEvent], notify: bool, gate: _CommitGate, seq: int
) -> BatchOutcome:
    with engine.connect() as conn:
        write_options(conn)
        with conn.begin():
            outcome = apply_batch(conn, events)
            if notify and outcome.changed:
                _send_notify(conn, "errors" if outcome.payment_errors else "metrics")
            if not gate.commit(seq):
                raise _Abandoned  # leaving the block rolls back
        return outcome


def _first_refused(engine: Engine, events: list[TrackedEvent]) -> int | None:
    """The index of the first event the database refuses, or None.

    Bisects over prefixes of ``events``, each applied in a transaction that is
    rolled back (a prefix fails once it holds the refused event): a handful of
    transactions even for a request of 500 events. Only run after a refusal.
    """

    def refused(n: int) -> bool:
        with engine.connect() as conn:
            write_options(conn)
            trans = conn.begin()
            try:
                apply_batch(conn, events[:n])
            except DBAPIError as exc:
                if _is_unavailable(exc):
                    raise
                return True
            finally:
                trans.rollback()
            return False

    if not refused(len(events)):
        return None
    low, high = 1, len(events)
    while low < high:
        middle = (low + high) // 2
        if refused(middle):
            high = middle
        else:
            low = middle + 1
    return low - 1


def _child_main(pipe: Pipe, url: str, busy_timeout: float, gate: _CommitGate) -> None:
    """The writer process: apply each batch it is sent, answer how it went."""
    # Ctrl-C goes to the whole process group; the server shuts this process down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    engine = make_engine(url, busy_timeout=busy_timeout, pg_options=WRITER_PG_OPTIONS)
    notify = engine.dialect.name == "postgresql"
    wal = _WalKeeper(engine)
    wal.checkpoint(engine)  # a WAL a full disk left behind, now that there may be room
    pipe.send(("ready",))
    while True:
        try:
            message = pipe.recv()
        except (EOFError, OSError):
            break
        if message is None:
            break
        try:
            if message[0] == "find":
                pipe.send(("found", _first_refused(engine, message[1])))
                continue
            _, seq, events = message
            outcome = _apply_in_transaction(engine, events, notify, gate, seq, wal)
        except _Abandoned:
            pipe.send(("abandoned",))
        except Exception as exc:
            if _is_disk_full(exc):
                kind = "full"
            elif _is_unavailable(exc):
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

    def __init__(self, url: str, busy_timeout: float, gate: _CommitGate) -> None:
        self._url = url
        self._busy_timeout = busy_timeout
        self._gate = gate
        self._pipe: Pipe | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process and wait until its database engine is ready (blocking).

        A fresh interpreter (never a fork of this threaded process), started as
        ``python -m nilemetrics.server.writer FD GATE_FD`` so that it does not
        re-import whatever script started the server. The URL travels over the
        socket, not the command line, where ``ps`` would show its password.
        """
        assert self._gate.fd is not None
        ours, theirs = socket.socketpair()
        proc = subprocess.Popen(
            [sys.executable, "-m", "nilemetrics.server.writer", str(theirs.fileno()),
             str(self._gate.fd)],
            pass_fds=(theirs.fileno(), self._gate.fd),
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

    async def _call(self, loop: asyncio.AbstractEventLoop, message: Any) -> Any:
        """Send one message and wait (without blocking the loop) for the answer."""
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
            pipe.send(message)
        except OSError as exc:
            loop.remove_reader(pipe.fileno())
            raise DatabaseUnavailable(f"writer process unreachable: {exc!r}") from exc
        message = await answer
        if message[0] == "error":
            _, kind, reason = message
            if kind == "full":
                raise StorageFull(reason)
            if kind == "unavailable":
                raise DatabaseUnavailable(reason)
            if kind == "refused":
                raise _BatchRefused(reason)
            raise DatabaseUnavailable("internal error while writing")
        return message

    async def apply(
        self, loop: asyncio.AbstractEventLoop, events: list[TrackedEvent], seq: int
    ) -> BatchOutcome:
        """Apply one batch as batch ``seq`` of the commit gate."""
        message = await self._call(loop, ("apply", seq, events))
        if message[0] == "abandoned":
            raise _Abandoned
        return BatchOutcome(applied=list(message[1]), payment_errors=message[2])

    async def find_refused(
        self, loop: asyncio.AbstractEventLoop, events: list[TrackedEvent]
    ) -> int | None:
        """The index of the first of ``events`` the database refuses (see _first_refused)."""
        message = await self._call(loop, ("find", events))
        index: int | None = message[1]
        return index


def _translate(exc: BaseException) -> Exception:
    if isinstance(exc, DatabaseUnavailable | EventRejected):
        return exc
    if _is_disk_full(exc):
        log.warning("database disk full: %s", describe_db_error(exc))
        return StorageFull(describe_db_error(exc))
    if isinstance(exc, _BatchRefused):
        log.warning("event refused by the database: %s", exc)
        return EventRejected()
    if _is_unavailable(exc):
        log.warning("database unavailable: %s", describe_db_error(exc))
        return DatabaseUnavailable(describe_db_error(exc))
    if isinstance(exc, DBAPIError):
        log.warning("event refused by the database: %s", describe_db_error(exc))
        return EventRejected()
    log.error("unexpected error while writing", exc_info=exc)
    return DatabaseUnavailable("internal error while writing")


def _child_entry() -> None:
    """``python -m nilemetrics.server.writer FD GATE_FD``: the writer process's main."""
    pipe = Pipe(int(sys.argv[1]))
    gate = _CommitGate(int(sys.argv[2]))
    url, busy_timeout = pipe.recv()
    _child_main(pipe, url, busy_timeout, gate)


if __name__ == "__main__":
    _child_entry()
