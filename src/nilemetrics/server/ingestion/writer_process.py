"""The writer process: owns the write connection and applies the batches it is sent.

In a thread, the writer's Python work and the HTTP side took turns on the GIL:
after every call into the database driver the writer waited for the event loop
to let go, so batches took far longer than their CPU time. A process of its own
has a GIL of its own. Batches are pickled to it over a socket pair.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import subprocess
import sys
from multiprocessing.connection import Connection as Pipe
from typing import Any

from sqlalchemy.exc import DBAPIError

from nilemetrics.server.db import DatabaseUnavailable, describe_db_error, make_engine
from nilemetrics.server.ingestion.commit import (
    CommitGate,
    WalKeeper,
    apply_in_transaction,
    first_refused,
    is_disk_full,
    is_unavailable,
)
from nilemetrics.server.ingestion.errors import Abandoned, BatchRefused, StorageFull
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
    notify = engine.dialect.name == "postgresql"
    wal = WalKeeper(engine)
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
                pipe.send(("found", first_refused(engine, message[1])))
                continue
            _, seq, events = message
            outcome = apply_in_transaction(engine, events, notify, gate, seq, wal)
        except Abandoned:
            pipe.send(("abandoned",))
        except Exception as exc:
            if is_disk_full(exc):
                kind = "full"
            elif is_unavailable(exc):
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


class WriterProcess:
    """A child process that owns the write connection; one batch in flight at a time."""

    def __init__(self, url: str, busy_timeout: float, gate: CommitGate) -> None:
        self._url = url
        self._busy_timeout = busy_timeout
        self._gate = gate
        self._pipe: Pipe | None = None
        self._proc: subprocess.Popen[bytes] | None = None

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
        if pipe is None:  # start() either set it or raised
            raise DatabaseUnavailable("the writer process is not running")
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
                raise BatchRefused(reason)
            raise DatabaseUnavailable("internal error while writing")
        return message

    async def apply(
        self, loop: asyncio.AbstractEventLoop, events: list[TrackedEvent], seq: int
    ) -> BatchOutcome:
        """Apply one batch as batch ``seq`` of the commit gate."""
        message = await self._call(loop, ("apply", seq, events))
        if message[0] == "abandoned":
            raise Abandoned
        return BatchOutcome(applied=list(message[1]), payment_errors=message[2])

    async def find_refused(
        self, loop: asyncio.AbstractEventLoop, events: list[TrackedEvent]
    ) -> int | None:
        """The index of the first of ``events`` the database refuses (see first_refused)."""
        message = await self._call(loop, ("find", events))
        index: int | None = message[1]
        return index


def child_entry() -> None:
    """``python -m nilemetrics.server.ingestion.writer_process FD GATE_FD``: its main."""
    pipe = Pipe(int(sys.argv[1]))
    gate = CommitGate(int(sys.argv[2]))
    url, busy_timeout = pipe.recv()
    child_main(pipe, url, busy_timeout, gate)


if __name__ == "__main__":
    child_entry()
