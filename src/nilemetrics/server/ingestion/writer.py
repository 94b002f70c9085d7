"""Group-commit writer: many requests' events, one transaction, answers after commit.

Requests put their events in a queue and wait. The writer takes everything
queued (up to ``max_batch``), applies it in one transaction, commits, and only
then wakes the waiting requests. While it commits, the next batch queues up, so
the commit rate adapts to the load by itself: one commit per event when idle,
hundreds of events per commit under load.

With the writer process, the next batch is handed over as soon as the process
says the one ahead is committing (its commit gate said yes), so it is waiting
there when that COMMIT returns: at most two batches are in flight, the second
one still abandonable, and batches are applied in the order they were taken
(one sent behind a COMMIT that fails is sent again after the failed one was
dealt with; see :mod:`nilemetrics.server.ingestion.writer_process`).

Batches are applied in a child process by default. In a thread, the writer's
Python work and the HTTP side took turns on the GIL: after every call into the
database driver the writer waited for the event loop to let go, so batches took
far longer than their CPU time and requests waited for them. Rare maintenance jobs
(cleanup, erasure) still run in a thread here, serialised with the batches.

A request's events are one unit: all of them are committed, or none. When the
database refuses something in a batch, the batch's requests are retried one
request at a time, so a bad request fails alone and takes nobody else's events
down, and no request is answered "failed" while some of its events were stored.

Requests are queued per client (see :mod:`nilemetrics.server.ingestion.fair_queue`) and
batches are built round-robin across clients, so one client's flood of big
requests does not stand between another client's single event and the database.
While other clients send, each batch of a flood's big requests is followed by a
short pause for the others' (``LARGE_PAUSE``), so their events seldom wait for
a flood's transaction at all.

Waiting is bounded, so a hung database (PostgreSQL stopped, a frozen disk, a
SQLite lock held elsewhere) cannot pile up memory or write stale work later:

- the queue holds at most ``max_queued`` events (a job counts as one); beyond
  that a submission fails at once (503); one client may hold at most
  ``client_max_queued`` of them, beyond that its submissions fail at once (429)
  while others still get in;
- a request not answered within ``write_timeout`` gets 503. Events still queued
  are dropped from the queue. A batch the database is working on is abandoned:
  the writer rolls it back instead of committing it (see :class:`CommitGate`).
  Only a batch whose commit has begun cannot be abandoned; its requests wait
  for the true outcome, so a 503 never stands for something later committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import count as counter
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from nilemetrics.server.db import DatabaseUnavailable, describe_db_error
from nilemetrics.server.ingestion.commit import (
    CommitGate,
    WalKeeper,
    apply_in_transaction,
    first_refused,
    is_disk_full,
    is_unavailable,
    run_job,
)
from nilemetrics.server.ingestion.errors import (
    Abandoned,
    BatchRefused,
    ClientOverShare,
    EventRejected,
    Skipped,
    StorageFull,
    WriterBusy,
    WriteTimedOut,
)
from nilemetrics.server.ingestion.events import BatchOutcome, TrackedEvent
from nilemetrics.server.ingestion.fair_queue import FairQueue
from nilemetrics.server.ingestion.writer_process import WriterProcess

log = logging.getLogger(__name__)

T = TypeVar("T")


class BatchObserver(Protocol):
    """Told of every batch the writer committed or failed (the /metrics counters)."""

    def committed(self, events: list[TrackedEvent], outcome: BatchOutcome,
                  seconds: float) -> None:
        """A batch was committed ``seconds`` after it was handed to the database
        (including, for a batch sent behind another, the rest of that one's COMMIT)."""

    def failed(self, exc: BaseException) -> None:
        """A batch failed (it is then answered, or retried request by request)."""

#: Most events of a turn that may share a batch with other clients' turns. Bigger
#: turns (a client with big requests or many queued) are written in batches of
#: their own kind, so a client with a few events never waits for a flooder's
#: 500-event transaction on top of the batch in flight (benchmarks/fairness.py).
SMALL_TURN = 64

#: While other clients with small turns are about (a small batch of theirs was
#: written in the last ``SMALL_RECENT_S`` seconds), a batch of large turns that
#: took ``t`` seconds is followed by ``LARGE_PAUSE * t`` seconds in which only
#: small turns are written. A large request is one transaction, so a single event
#: arriving during it waits for it; the pause keeps the writer free for such
#: events part of the time, so most of them (a client awaits each answer before
#: sending on) find it idle: large turns get 1 / (1 + LARGE_PAUSE) of the writer
#: while others are active, all of it when they are alone.
LARGE_PAUSE = 2.0
SMALL_RECENT_S = 1.0


@dataclass(slots=True, eq=False)
class _Group:
    """One request's events, written together or not at all."""

    events: list[TrackedEvent]
    future: asyncio.Future[list[bool]]
    client: str = ""
    #: Arrival order (a job waits for the requests queued before it).
    order: int = 0
    #: When its time is up (loop time).
    deadline: float = 0.0
    #: The batch it was last handed to the database with (0: still queued).
    seq: int = 0


@dataclass(slots=True, eq=False)
class _Batch:
    """Requests taken from the queue together."""

    groups: list[_Group]
    #: Of large turns (see LARGE_PAUSE), and whose.
    large: bool
    clients: Collection[str]
    #: When it was taken (loop time).
    taken: float


@dataclass(slots=True, eq=False)
class _Flight:
    """A batch handed to the database, not answered yet."""

    seq: int
    batch: _Batch
    events: list[TrackedEvent]
    #: With ``committing`` set, the writer process's answer (read by
    #: WriterProcess.outcome); in a thread, the BatchOutcome itself.
    answer: asyncio.Future[Any]
    #: Done once the writer process commits it (None: in a thread, nothing follows it).
    committing: asyncio.Future[None] | None
    sent: float


@dataclass(slots=True, eq=False)
class _JobItem:
    job: Callable[[Connection], Any]
    future: asyncio.Future[Any]
    notify: bool = True
    #: Requests that arrived before it (order below this) are written first.
    mark: int = 0
    timer: asyncio.TimerHandle | None = None
    running: bool = False
    #: Picklable: runs in the writer process (see run_job).
    portable: bool = False


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
        self._gate = CommitGate.shared() if process_url is not None else CommitGate()
        self._process = (
            WriterProcess(process_url, busy_timeout, self._gate)
            if process_url is not None
            else None
        )
        self._wal = WalKeeper(engine)
        #: Requests in arrival order, hence in deadline order (one timeout for all): one
        #: timer for the earliest deadline, not one per request (see _sweep).
        self._deadlines: deque[_Group] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._seq = 0
        #: The requests of each batch handed to the database and not answered yet.
        self._in_flight: dict[int, list[_Group]] = {}
        #: Large turns wait until then (loop time); see LARGE_PAUSE.
        self._large_after = 0.0
        #: When the last batch of small turns of other clients than those of the
        #: last large batch (``_large_clients``) was written (loop time).
        self._small_seen = float("-inf")
        self._large_clients: set[str] = set()
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
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
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
        group = _Group(events, loop.create_future(), client, next(self._order),
                       loop.time() + self._write_timeout)
        self._deadlines.append(group)
        if self._sweeper is None:
            self._sweeper = loop.call_at(group.deadline, self._sweep)
        self._groups.push(client, group, len(events))
        self._wake.set()
        try:
            return await group.future
        except asyncio.CancelledError:
            self._drop(group)  # nobody waits for it any more: never write it later
            raise

    def _sweep(self) -> None:
        """Expire every request whose time is up; arm the timer for the next deadline.

        A timer per request (``call_later`` and its ``cancel``) was a measurable share
        of the event loop's time per event; the deadlines come in arrival order, so
        one timer at the earliest one does the same.
        """
        self._sweeper = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadlines = self._deadlines
        while deadlines and (deadlines[0].future.done() or deadlines[0].deadline <= now):
            group = deadlines.popleft()
            if not group.future.done():
                self._expire(group)
        if deadlines:
            self._sweeper = loop.call_at(deadlines[0].deadline, self._sweep)

    def _forget_answered(self) -> None:
        """Let go of the answered requests at the head of the deadline queue (their events)."""
        deadlines = self._deadlines
        while deadlines and deadlines[0].future.done():
            deadlines.popleft()

    async def run_job(
        self, job: Callable[[Connection], T], *, notify: bool = True, portable: bool = False
    ) -> T:
        """Run ``job(conn)`` in the writer thread in its own write transaction.

        Jobs and batches take turns, so a job never waits for a batch's lock.
        ``notify``: tell other server processes (PostgreSQL) that data changed.
        ``portable``: ``job`` can be pickled (a module-level function, or a
        ``functools.partial`` of one, with picklable arguments), so it runs in the
        writer process, if there is one, instead of a thread of this process: a
        frequent small job there costs a round trip, not a thread taking turns on
        the GIL with the event loop while the writer process waits.
        A job still queued after ``write_timeout`` is dropped (503); a running one
        is waited for.
        """
        self._admit(1)
        loop = asyncio.get_running_loop()
        item = _JobItem(job, loop.create_future(), notify, next(self._order), portable=portable)
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
        members = self._in_flight.get(group.seq)
        if members is not None and self._gate.abandon(group.seq):
            # The writer will roll this batch back: none of its requests is stored.
            for member in members:
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
                    if head.portable and self._process is not None:
                        result = await self._process.run_job(loop, head.job, head.notify)
                    else:
                        result = await loop.run_in_executor(
                            self._executor, run_job, self._engine, head.job, head.notify
                        )
                except Exception as exc:  # handed to the awaiting caller
                    if not head.future.done():
                        head.future.set_exception(_translate(exc))
                else:
                    if not head.future.done():
                        head.future.set_result(result)
                continue
            now = loop.time()
            batch = self._take(now)
            if batch is None:
                # Only large turns queued, and they are pausing: wait for a small one.
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._large_after - now):  # see Hub._run
                        await self._wake.wait()
                continue
            flight = await self._send(loop, batch)
            while flight is not None:
                # The next batch goes out while this one commits (writer process only).
                following = None
                if flight.committing is not None:
                    await asyncio.wait((flight.committing, flight.answer),
                                       return_when=asyncio.FIRST_COMPLETED)
                    if self._may_follow(flight):
                        following_batch = self._take(loop.time())
                        if following_batch is not None:
                            following = await self._send(loop, following_batch, flight)
                await self._finish(loop, flight)
                flight = following

    def _take(self, now: float) -> _Batch | None:
        """The next batch of whole requests (None: only large turns, and they pause)."""
        # Whole requests only: a request's events never straddle two batches.
        groups = self._groups.take(self._max_batch, large=now >= self._large_after)
        if not groups:
            return None
        return _Batch(groups, self._groups.last_large, self._groups.last_clients, now)

    def _may_follow(self, flight: _Flight) -> bool:
        """Whether a batch may be sent behind ``flight``, which is now committing.

        Not behind a batch of large turns (the pause after it is only known once it
        is done), nor when a job is due (it runs alone), nor with nothing queued.
        """
        return (
            flight.committing is not None
            and flight.committing.done()
            and not flight.answer.done()
            and not flight.batch.large
            and bool(self._groups)
            and not (self._jobs and self._job_due())
        )

    async def _write(self, loop: asyncio.AbstractEventLoop, groups: list[_Group]) -> None:
        """Write ``groups`` as one batch, alone in flight, and answer them."""
        flight = await self._send(loop, _Batch(groups, False, (), loop.time()))
        if flight is not None:
            await self._finish(loop, flight)

    async def _send(
        self, loop: asyncio.AbstractEventLoop, batch: _Batch, ahead: _Flight | None = None
    ) -> _Flight | None:
        """Hand ``batch`` to the database (behind ``ahead``, which is committing)."""
        now = loop.time()
        for group in batch.groups:
            # Its time ran out while it was away from the queue (being isolated).
            if group.deadline <= now and not group.future.done():
                group.future.set_exception(self._timed_out())
        batch.groups = [group for group in batch.groups if not group.future.done()]
        if not batch.groups:
            self._forget_answered()
            return None
        events = [event for group in batch.groups for event in group.events]
        self._seq += 1
        seq = self._seq
        self._gate.open(seq)
        for group in batch.groups:
            group.seq = seq
        self._in_flight[seq] = batch.groups
        committing: asyncio.Future[None] | None = None
        answer: asyncio.Future[Any]
        try:
            if self._process is not None:
                pending = await self._process.send_batch(
                    loop, events, seq, ahead.seq if ahead is not None else 0
                )
                answer, committing = pending.answer, pending.committing
            else:
                answer = loop.run_in_executor(self._executor, self._apply, events, seq)
        except Exception as exc:
            answer = loop.create_future()
            answer.set_exception(exc)
        return _Flight(seq, batch, events, answer, committing, now)

    async def _finish(self, loop: asyncio.AbstractEventLoop, flight: _Flight) -> None:
        """Wait for ``flight``'s outcome and answer its requests (or retry them)."""
        batch = flight.batch.groups
        try:
            answer = await flight.answer
            outcome: BatchOutcome = (
                answer if flight.committing is None else WriterProcess.outcome(answer)
            )
        except Abandoned:
            return  # its requests were answered when it was abandoned
        except Skipped:
            # The batch ahead of it failed; it was never applied: now it is its turn.
            await self._write(loop, batch)
            return
        except Exception as exc:
            if self.observer is not None:
                self.observer.failed(exc)
            await self._failed(loop, batch, exc)
            return
        finally:
            self._in_flight.pop(flight.seq, None)
        start = 0
        for group in batch:
            end = start + len(group.events)
            if not group.future.done():
                group.future.set_result(outcome.applied[start:end])
            else:  # the gate makes this impossible; say so loudly if it ever is not
                log.error("a batch was committed after one of its requests was answered")
            start = end
        self._forget_answered()
        self._pace(loop.time(), flight.batch)
        try:
            self._on_commit(outcome)
            if self.observer is not None:
                self.observer.committed(flight.events, outcome, loop.time() - flight.sent)
        except Exception:  # a push problem must never fail ingestion
            log.exception("on_commit callback failed")

    def _pace(self, done: float, batch: _Batch) -> None:
        """After a batch of the queue: pause large turns if others are about (LARGE_PAUSE)."""
        if batch.large:
            self._large_clients = set(batch.clients)
            if done - self._small_seen < SMALL_RECENT_S:
                self._large_after = done + (done - batch.taken) * LARGE_PAUSE
        elif batch.clients and not self._large_clients.issuperset(batch.clients):
            # Others than the big senders are about (a big sender's own small
            # turns must not pause its large ones: it would only wait for itself).
            self._small_seen = done

    async def _failed(
        self, loop: asyncio.AbstractEventLoop, batch: list[_Group], exc: Exception
    ) -> None:
        """A batch was rolled back: answer, or retry its requests one at a time."""
        unavailable = is_unavailable(exc) or isinstance(exc, DatabaseUnavailable)
        refused = not unavailable and (
            isinstance(exc, BatchRefused) or isinstance(exc, DBAPIError)
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
                self._executor, first_refused, self._engine, group.events
            )
        except Exception as exc:
            log.warning("could not tell which event was refused: %s", exc)
            return None

    def _apply(self, events: list[TrackedEvent], seq: int) -> BatchOutcome:
        return apply_in_transaction(
            self._engine, events, self._notify, self._gate, seq, self._wal
        )


def _translate(exc: BaseException) -> Exception:
    if isinstance(exc, DatabaseUnavailable | EventRejected):
        return exc
    if is_disk_full(exc):
        log.warning("database disk full: %s", describe_db_error(exc))
        return StorageFull(describe_db_error(exc))
    if isinstance(exc, BatchRefused):
        log.warning("event refused by the database: %s", exc)
        return EventRejected()
    if is_unavailable(exc):
        log.warning("database unavailable: %s", describe_db_error(exc))
        return DatabaseUnavailable(describe_db_error(exc))
    if isinstance(exc, DBAPIError):
        log.warning("event refused by the database: %s", describe_db_error(exc))
        return EventRejected()
    log.error("unexpected error while writing", exc_info=exc)
    return DatabaseUnavailable("internal error while writing")


