"""The writer's pause after a flood's batch: others' single events find it idle.

The database is replaced by a fixed cost per batch (``_apply`` sleeps), so the
schedule the writer builds is what is measured: which batches run when.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, cast

from sqlalchemy import create_engine

from nilemetrics.server.ingestion import writer as writer_module
from nilemetrics.server.ingestion.events import BatchOutcome, TrackedEvent
from nilemetrics.server.ingestion.writer import GroupCommitWriter

LARGE_COST = 0.05  # seconds per batch of large turns
SMALL_COST = 0.002


class Timed(GroupCommitWriter):
    """A writer whose batches cost fixed time; it logs (start, end, size) of each."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log: list[tuple[float, float, int]] = []

    def _apply(self, events: list[TrackedEvent], seq: int) -> BatchOutcome:
        started = time.monotonic()
        time.sleep(LARGE_COST if len(events) > writer_module.SMALL_TURN else SMALL_COST)
        self.log.append((started, time.monotonic(), len(events)))
        return BatchOutcome(applied=[True] * len(events))


def _events(n: int) -> list[TrackedEvent]:
    return cast(list[TrackedEvent], [object()] * n)


async def _run(tmp_path: Path, seconds: float, victim: bool) -> tuple[Timed, list[float]]:
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    writer = Timed(engine, max_batch=1000, on_commit=lambda outcome: None, write_timeout=30)
    await writer.start()
    waits: list[float] = []
    stop = time.monotonic() + seconds

    async def flood() -> None:
        while time.monotonic() < stop:
            await writer.submit_many(_events(500), "flooder")

    async def single() -> None:
        while time.monotonic() < stop:
            started = time.monotonic()
            await writer.submit(_events(1)[0], "victim")
            waits.append(time.monotonic() - started)
            await asyncio.sleep(0.001)

    tasks = [flood() for _ in range(8)] + ([single()] if victim else [])
    await asyncio.gather(*tasks)
    await writer.stop()
    engine.dispose()
    return writer, waits


def _large_gaps(
    log: list[tuple[float, float, int]], after: float = 0.0, before: float = float("inf")
) -> list[float]:
    """Idle time before each flood batch after the first, of those between the bounds."""
    large = [(start, end) for start, end, size in log
             if size > writer_module.SMALL_TURN and end > after and start < before]
    return [nxt[0] - prev[1] for prev, nxt in zip(large, large[1:], strict=False)]


async def test_a_flood_pauses_after_each_batch_while_another_client_sends(
    tmp_path: Path,
) -> None:
    """Each flood batch is followed by a pause; the victim's events mostly run in it."""
    writer, waits = await _run(tmp_path, 1.5, victim=True)
    # While the victim sends (before its first event and once it has stopped, the
    # flood is alone and gets the whole writer).
    small = [end for _, end, size in writer.log if size <= writer_module.SMALL_TURN]
    gaps = _large_gaps(writer.log, after=min(small), before=max(small))
    assert len(gaps) >= 5
    # A pause of at least LARGE_PAUSE times a batch's cost between flood batches
    # (the pause is a timeout: never shorter).
    assert min(gaps) >= writer_module.LARGE_PAUSE * LARGE_COST * 0.9, gaps
    waits.sort()
    # Most single events find the writer idle: the median waits for a small batch,
    # not for half of a 50 ms flood transaction.
    assert waits[len(waits) // 2] < LARGE_COST / 2, waits
    assert len(waits) > 3 * len(gaps)


async def test_a_flood_alone_gets_the_whole_writer(tmp_path: Path) -> None:
    """With nobody else sending, flood batches follow each other without a pause."""
    writer, _ = await _run(tmp_path, 1.0, victim=False)
    gaps = _large_gaps(writer.log)
    assert len(gaps) >= 10
    assert sorted(gaps)[len(gaps) // 2] < 0.01, gaps
