"""The writer process: owns the write connection and applies the batches it is sent.

In a thread, the writer's Python work and the HTTP side took turns on the GIL:
after every call into the database driver the writer waited for the event loop
to let go, so batches took far longer than their CPU time. A process of its own
has a GIL of its own. Batches are pickled to it over a socket pair.

Two batches may be in flight: the server sends the next batch as soon as the
writer says it is committing the one before (``("committing",)``, after the
commit gate said yes), so the writer finds it waiting when that COMMIT returns
instead of idling while the answer travels back, the server answers the batch's
requests and the next batch travels over (about a fifth of each batch's time,
measured in README "Performance"). A thread of the writer reads every message as
it comes, so sending never blocks the server's event loop, even while the writer
is stuck in a COMMIT. A batch sent behind one whose COMMIT then fails is not
applied but answered ``("skipped",)``: the server deals with the failed batch
first (it may retry it request by request) and then sends the skipped one again,
so batches are still applied in the order their requests arrived.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from nilemetrics.server.db import DatabaseUnavailable, describe_db_error, make_engine
from nilemetrics.server.ingestion.commit import (
    CommitGate,
    WalKeeper,
    apply_in_transaction,
    first_refused,
    is_disk_full,
    is_unavailable,
    run_job,
)
from nilemetrics.server.ingestion.errors import Abandoned, BatchRefused, Skipped, StorageFull
from nilemetrics.server.ingestion.events import BatchOutcome, TrackedEvent

log = logging.getLogger(__name__)

#: PostgreSQL session settings of the writer process's connection (libpq ``options``).
#: Every statement of a batch finds its rows by key, a few dozen at a time, so index
#: probes are always right; but the planner's statistics lag behind fast-growing
#: tables (a fresh database, a burst of new sessions, autovacuum late or off), and
#: then it chose a sequential scan of all sessions and *bitmap* scans of the open-visits
#: index. A bitmap scan never marks the index entries of closed visits as dead (a
#: plain index scan does), so every lookup revisited each session's whole history
#: (measured in README "Performance").
#: Only the writer process's connection gets these: reports, cleanup and erasure
#: run elsewhere and are planned normally.
WRITER_PG_OPTIONS = "-c enable_seqscan=off -c enable_bitmapscan=off"

def child_main(pipe: Pipe, url: str, busy_timeout: float, gate: CommitGate) -> None:
    """The writer process: apply each batch it is sent, answer how it went."""
    # Ctrl-C goes to the whole process group; the server shuts this process down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    engine = make_engine(url, busy_timeout=busy_timeout, pg_options=WRITER_PG_OPTIONS)
    wal = WalKeeper(engine)
    wal.checkpoint(engine)  # a WAL a full disk left behind, now that there may be room
    serve(pipe, engine, gate, wal)
    engine.dispose()


def serve(
    pipe: Pipe, engine: Engine, gate: CommitGate, wal: WalKeeper,
    apply: Callable[..., BatchOutcome] = apply_in_transaction,
) -> None:
    """Answer the server's messages until it says stop (None) or goes away.

    ``apply``: :func:`apply_in_transaction`, or a stand-in in tests.
    """
    notify = engine.dialect.name == "postgresql"
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    threading.Thread(target=_read_all, args=(pipe, inbox), name="nm-inbox", daemon=True).start()
    pipe.send(("ready",))

    def committing() -> None:
        pipe.send(("committing",))

    failed = 0  # the last batch that failed (a batch sent behind it is skipped)
    while True:
        message = inbox.get()
        if message is None:
            return
        seq = 0
        try:
            if message[0] == "unreadable":
                log.error("could not read a message from the server: %s", message[1])
                pipe.send(("error", "internal", message[1]))
                continue
            if message[0] == "find":
                pipe.send(("found", first_refused(engine, message[1])))
                continue
            if message[0] == "job":
                _, job, job_notify = message
                pipe.send(("done", run_job(engine, job, job_notify)))
                continue
            _, seq, events, after = message
            if after and after == failed:
                pipe.send(("skipped",))
                continue
            outcome = apply(engine, events, notify, gate, seq, wal, committing)
        except Abandoned:
            answer: tuple[Any, ...] = ("abandoned",)
        except Exception as exc:
            failed = seq or failed
            if is_disk_full(exc):
                kind = "full"
            elif is_unavailable(exc):
                kind = "unavailable"
            elif isinstance(exc, DBAPIError):
                kind = "refused"
            else:
                kind = "internal"
                log.error("unexpected error while writing", exc_info=exc)
            answer = ("error", kind, describe_db_error(exc))
        else:
            answer = ("ok", outcome.applied, outcome.payment_errors)
        try:
            pipe.send(answer)
        except OSError:
            return  # the server is gone


def _read_all(pipe: Pipe, inbox: queue.SimpleQueue[Any]) -> None:
    """The writer's reading thread: every message into ``inbox`` as it arrives (None: the end).

    A message that cannot be unpickled (a job whose code this process cannot
    import) is answered as an error in its turn, and reading goes on.
    """
    while True:
        try:
            message = pipe.recv()
        except (EOFError, OSError):
            message = None
        except Exception as exc:
            message = ("unreadable", f"{type(exc).__name__}: {exc}")
        inbox.put(message)
        if message is None:
            return


@dataclass(slots=True, eq=False)
class Pending:
    """A message sent to the writer process whose answer has not come yet."""

    #: The answer (the raw message).
    answer: asyncio.Future[Any]
    #: Set when the writer says it is committing this batch (apply only).
    committing: asyncio.Future[None] | None = None


class WriterProcess:
    """A child process that owns the write connection; answers come in the order sent."""

    def __init__(self, url: str, busy_timeout: float, gate: CommitGate) -> None:
        self._url = url
        self._busy_timeout = busy_timeout
        self._gate = gate
        self._pipe: Pipe | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        #: Messages sent and not answered yet, oldest first.
        self._pending: deque[Pending] = deque()
        self._reading: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Start the process and wait until its database engine is ready (blocking).

        A fresh interpreter (never a fork of this threaded process), started as
        ``python -m nilemetrics.server.ingestion.writer_process FD GATE_FD`` so that it does not
        re-import whatever script started the server. The URL travels over the
        socket, not the command line, where ``ps`` would show its password.
        """
        if self._gate.fd is None:
            raise ValueError("the writer process needs a gate shared through a file")
        ours, theirs = socket.socketpair()
        proc = subprocess.Popen(
            [sys.executable, "-m", "nilemetrics.server.ingestion.writer_process",
             str(theirs.fileno()), str(self._gate.fd)],
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
        """Ask the process to finish, then make sure it is gone (blocking).

        Call it from the event loop's thread only once nothing is pending (or from
        a thread while the loop waits for it, as the restart does).
        """
        self._stop_reading()
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

    def _stop_reading(self) -> None:
        if self._reading is not None and self._pipe is not None:
            self._reading.remove_reader(self._pipe.fileno())
        self._reading = None

    async def _ensure_running(self) -> Pipe:
        if not self._pending and (self._proc is None or self._proc.poll() is not None):
            # A crashed writer is replaced; the batches it died on were answered 503.
            log.warning("writer process not running; starting a new one")
            self._stop_reading()
            await asyncio.to_thread(self.close)
            await asyncio.to_thread(self.start)
        if self._pipe is None:  # start() either set it or raised
            raise DatabaseUnavailable("the writer process is not running")
        return self._pipe

    def _readable(self) -> None:
        """An answer (or the writer saying it commits) arrived: hand it to its sender."""
        pipe = self._pipe
        assert pipe is not None
        try:
            message = pipe.recv()
        except (EOFError, OSError) as exc:
            self._stop_reading()
            died = DatabaseUnavailable(f"writer process died: {exc!r}")
            while self._pending:
                pending = self._pending.popleft()
                if not pending.answer.done():
                    pending.answer.set_exception(died)
            return
        if not self._pending:
            log.error("the writer process answered a message nobody sent: %r", message[:1])
            return
        if message[0] == "committing":
            committing = self._pending[0].committing
            if committing is not None and not committing.done():
                committing.set_result(None)
            return
        pending = self._pending.popleft()
        if not pending.answer.done():
            pending.answer.set_result(message)

    async def _send(self, loop: asyncio.AbstractEventLoop, message: Any, *,
                    committing: bool = False) -> Pending:
        """Send one message; its answer comes to the returned :class:`Pending`."""
        pipe = await self._ensure_running()
        if self._reading is None:
            loop.add_reader(pipe.fileno(), self._readable)
            self._reading = loop
        try:
            pipe.send(message)
        except OSError as exc:
            raise DatabaseUnavailable(f"writer process unreachable: {exc!r}") from exc
        pending = Pending(loop.create_future(), loop.create_future() if committing else None)
        self._pending.append(pending)
        return pending

    @staticmethod
    def _checked(message: Any) -> Any:
        """The writer's answer, or the error it reports raised."""
        if message[0] == "error":
            _, kind, reason = message
            if kind == "full":
                raise StorageFull(reason)
            if kind == "unavailable":
                raise DatabaseUnavailable(reason)
            if kind == "refused":
                raise BatchRefused(reason)
            raise DatabaseUnavailable("internal error while writing")
        return message

    async def _call(self, loop: asyncio.AbstractEventLoop, message: Any) -> Any:
        """Send one message and wait (without blocking the loop) for what it answers."""
        pending = await self._send(loop, message)
        return self._checked(await pending.answer)[1]

    async def send_batch(
        self, loop: asyncio.AbstractEventLoop, events: list[TrackedEvent], seq: int,
        after: int = 0,
    ) -> Pending:
        """Send batch ``seq`` of the commit gate; :meth:`outcome` reads its answer.

        ``after``: the batch still in flight ahead of it (0: none). If that one
        fails, this one comes back :class:`Skipped`, never applied.
        """
        return await self._send(loop, ("apply", seq, events, after), committing=True)

    @classmethod
    def outcome(cls, answer: Any) -> BatchOutcome:
        """The outcome in the answer to a batch sent with :meth:`send_batch`.

        Raises :class:`Abandoned` (rolled back for the server), :class:`Skipped`
        (not applied: the batch ahead failed) or the error that failed it.
        """
        message = cls._checked(answer)
        if message[0] == "abandoned":
            raise Abandoned
        if message[0] == "skipped":
            raise Skipped
        return BatchOutcome(applied=list(message[1]), payment_errors=message[2])

    async def run_job(
        self, loop: asyncio.AbstractEventLoop, job: Callable[[Any], Any], notify: bool
    ) -> Any:
        """Run a picklable ``job(conn)`` in the writer process, in a transaction of its own."""
        return await self._call(loop, ("job", job, notify))

    async def find_refused(
        self, loop: asyncio.AbstractEventLoop, events: list[TrackedEvent]
    ) -> int | None:
        """The index of the first of ``events`` the database refuses (see first_refused)."""
        index: int | None = await self._call(loop, ("find", events))
        return index


def child_entry() -> None:
    """``python -m nilemetrics.server.ingestion.writer_process FD GATE_FD``: its main."""
    pipe = Pipe(int(sys.argv[1]))
    gate = CommitGate(int(sys.argv[2]))
    url, busy_timeout = pipe.recv()
    child_main(pipe, url, busy_timeout, gate)


if __name__ == "__main__":
    child_entry()
