"""Two batches in flight: the next one is sent while the one ahead commits.

The writer process's loop (``writer_process.serve``) runs in a thread on one end of
a socket pair, the server's ``GroupCommitWriter`` and ``WriterProcess`` on the
other, as in production; only the database work is a script (``Script``), so the
order and timing of what reaches the database is what is checked.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import create_engine
from sqlalchemy.exc import OperationalError

from nilemetrics.server.db import DatabaseUnavailable
from nilemetrics.server.ingestion.commit import CommitGate, WalKeeper
from nilemetrics.server.ingestion.errors import Abandoned, WriteTimedOut
from nilemetrics.server.ingestion.events import BatchOutcome, TrackedEvent
from nilemetrics.server.ingestion.writer import GroupCommitWriter
from nilemetrics.server.ingestion.writer_process import WriterProcess, serve

WRITES_S = 0.03  # the script's time for a batch's writes, before its COMMIT


class Script:
    """Stands in for apply_in_transaction in the writer's thread; events are strings.

    A batch holding ``"slow:<name>"`` spends ``slow_commit`` seconds in its COMMIT
    (or until ``release`` is set, if it is), one holding ``"fail:<name>"`` then fails
    as a lost connection would.
    """

    def __init__(self, slow_commit: float = 0.1) -> None:
        self.slow_commit = slow_commit
        self.release: threading.Event | None = None
        self.applied: list[str] = []  # events committed, in order
        self.started: list[list[str]] = []  # every batch the database began
        self.in_commit = threading.Event()

    def __call__(self, engine: Any, events: list[str], notify: bool, gate: CommitGate,
                 seq: int, wal: Any, committing: Any) -> BatchOutcome:
        self.started.append(list(events))
        time.sleep(WRITES_S)
        if not gate.commit(seq):
            raise Abandoned
        committing()
        if any(e.startswith(("slow:", "fail:")) for e in events):
            self.in_commit.set()
            if self.release is not None:
                self.release.wait(30)
            else:
                time.sleep(self.slow_commit)
        if any(e.startswith("fail:") for e in events):
            raise OperationalError("COMMIT", {}, Exception("server closed the connection"))
        self.applied.extend(events)
        return BatchOutcome(applied=[True] * len(events))


class _ThreadChild:
    """What WriterProcess knows of its child (Popen), for the thread running ``serve``."""

    def __init__(self, thread: threading.Thread) -> None:
        self._thread = thread

    def poll(self) -> int | None:
        return None if self._thread.is_alive() else 0

    def wait(self, timeout: float | None = None) -> int:
        self._thread.join(timeout)
        return 0

    def kill(self) -> None:
        pass


@pytest.fixture
async def writer_and_script(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[GroupCommitWriter, Script]]:
    options: dict[str, Any] = getattr(request, "param", {})
    script = Script(options.get("slow_commit", 0.1))
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    writer = GroupCommitWriter(engine, max_batch=1000, on_commit=lambda outcome: None,
                               write_timeout=options.get("write_timeout", 5.0))
    gate = writer._gate
    ours, theirs = socket.socketpair()
    child = threading.Thread(
        target=serve, args=(Pipe(theirs.detach()), engine, gate, WalKeeper(engine), script),
        daemon=True,
    )
    child.start()
    process = WriterProcess("unused", 1.0, gate)
    process._pipe = Pipe(ours.detach())
    process._proc = cast(Any, _ThreadChild(child))
    assert process._pipe.recv() == ("ready",)
    process.start = lambda: None  # type: ignore[method-assign]
    writer._process = process
    await writer.start()
    yield writer, script
    if script.release is not None:
        script.release.set()
    await writer.stop()
    engine.dispose()


def _submit(writer: GroupCommitWriter, *events: str) -> asyncio.Task[list[bool]]:
    return asyncio.get_running_loop().create_task(
        writer.submit_many(cast(list[TrackedEvent], list(events)))
    )


async def _until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.002)


async def test_the_next_batch_goes_out_while_the_one_ahead_commits(
    writer_and_script: tuple[GroupCommitWriter, Script],
) -> None:
    """Requests that arrive while a batch commits are handed over before its COMMIT ends,
    and everything is committed once, in the order it arrived."""
    writer, script = writer_and_script
    first = _submit(writer, "slow:a")
    await _until(lambda: bool(writer._in_flight))
    second = [_submit(writer, f"b{i}") for i in range(3)]
    await _until(script.in_commit.is_set)
    await _until(lambda: len(writer._in_flight) == 2)  # both in flight at once
    assert not first.done()
    assert await first == [True]
    assert [await task for task in second] == [[True]] * 3
    assert script.applied == ["slow:a", "b0", "b1", "b2"]
    assert script.started == [["slow:a"], ["b0", "b1", "b2"]]
    assert not writer._in_flight and not writer._deadlines


async def test_a_batch_behind_a_failed_commit_is_written_after_it(
    writer_and_script: tuple[GroupCommitWriter, Script],
) -> None:
    """The COMMIT ahead fails: the batch sent behind it is not applied out of turn, but
    written once the failed one is answered, and its requests succeed."""
    writer, script = writer_and_script
    failing = _submit(writer, "fail:a")
    await _until(lambda: bool(writer._in_flight))
    behind = _submit(writer, "b")
    await _until(lambda: len(writer._in_flight) == 2)
    with pytest.raises(DatabaseUnavailable):
        await failing
    assert await behind == [True]
    # "b" was skipped behind the failure (never begun), then sent again on its own.
    assert script.started == [["fail:a"], ["b"]]
    assert script.applied == ["b"]
    assert not writer._in_flight


@pytest.mark.parametrize("writer_and_script", [{"write_timeout": 0.3, "slow_commit": 0.8}],
                         indirect=True)
async def test_a_batch_waiting_behind_a_slow_commit_can_still_be_abandoned(
    writer_and_script: tuple[GroupCommitWriter, Script],
) -> None:
    """Its time runs out while the batch ahead is stuck in COMMIT: 503 on time, and it is
    rolled back instead of committed once the writer gets to it."""
    writer, script = writer_and_script
    ahead = _submit(writer, "slow:a")
    await _until(lambda: bool(writer._in_flight))
    started = time.monotonic()
    behind = _submit(writer, "b")
    with pytest.raises(WriteTimedOut):
        await behind
    assert time.monotonic() - started < 0.6
    assert not ahead.done()  # its commit had begun: it waits for the outcome
    assert await ahead == [True]
    await _until(lambda: not writer._in_flight)
    assert script.applied == ["slow:a"]


async def test_sending_never_blocks_the_event_loop_while_the_writer_is_stuck(
    writer_and_script: tuple[GroupCommitWriter, Script],
) -> None:
    """A big batch sent behind a COMMIT that hangs is read off the socket by the
    writer's reading thread: the server's event loop keeps running."""
    writer, script = writer_and_script
    script.release = threading.Event()
    ahead = _submit(writer, "slow:a")
    await _until(lambda: bool(writer._in_flight))
    big = [f"{i}:" + "x" * 50_000 for i in range(60)]  # ~3 MB, far over a socket's buffer
    behind = _submit(writer, *big)
    await _until(lambda: len(writer._in_flight) == 2)  # sent once "slow:a" began its COMMIT
    assert script.in_commit.is_set()
    started = time.monotonic()
    await asyncio.sleep(0.05)
    assert time.monotonic() - started < 0.5
    script.release.set()
    assert await ahead == [True]
    assert await behind == [True] * 60
    assert script.applied == ["slow:a", *big]


def test_a_second_try_of_the_batch_ahead_leaves_the_one_behind_abandonable() -> None:
    """The gate's one slot holds the batch behind once it is sent; the batch ahead (whose
    commit had begun) asking again, as after a full disk, neither fails nor takes the slot:
    an abandoned batch behind it is still never committed."""
    gate = CommitGate()
    gate.open(1)
    assert gate.commit(1)
    gate.open(2)  # sent behind batch 1, which is committing
    assert not gate.abandon(1)
    assert gate.abandon(2)
    assert gate.commit(1)  # batch 1's second try
    assert not gate.commit(2)
    gate.open(3)
    assert gate.commit(3) and not gate.abandon(3)


def _cannot_load() -> None:
    raise ImportError("no module named 'elsewhere'")


class _Unreadable:
    """Pickles fine, cannot be unpickled (a job whose code the writer cannot import)."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (_cannot_load, ())

    def __call__(self, conn: Any) -> None:
        raise AssertionError("never run")


async def test_a_message_the_writer_cannot_read_fails_alone(
    writer_and_script: tuple[GroupCommitWriter, Script],
) -> None:
    """The writer's reading thread answers it as an error in its turn and reads on."""
    writer, script = writer_and_script
    with pytest.raises(DatabaseUnavailable):
        await asyncio.wait_for(writer.run_job(_Unreadable(), notify=False, portable=True), 5)
    assert await asyncio.wait_for(_submit(writer, "after"), 5) == [True]
    assert script.applied == ["after"]
