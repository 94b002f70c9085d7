"""The live numbers the hub pushes: read from the database, and stored for other tools."""

from __future__ import annotations

from datetime import datetime
from functools import partial

from sqlalchemy import Connection

from nilemetrics.protocol.pushed import LiveMetrics, PaymentErrorRow
from nilemetrics.server.clock import Clock
from nilemetrics.server.ingestion.writer import GroupCommitWriter
from nilemetrics.server.live import HOUR, payment_error_rows, snapshot, store_snapshot
from nilemetrics.server.state import Reader

#: Rows a ``payment-errors-update`` frame carries (the newest of the last hour).
PUSHED_ERROR_ROWS = 50

#: Key of the PostgreSQL advisory lock held while a snapshot is stored: several
#: processes may store the same snapshot at once.
_SNAPSHOT_LOCK = 7305441863


class LiveNumbers:
    """Reads the numbers for the hub and stores each new snapshot in ``live_metrics``."""

    def __init__(
        self, *, reader: Reader, writer: GroupCommitWriter, clock: Clock, live_window: float
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._clock = clock
        self._window = live_window

    async def metrics(self) -> LiveMetrics:
        """The live metrics now."""
        now, window = self._clock.now(), self._window
        return await self._reader.read(lambda conn: snapshot(conn, now, window))

    async def errors(self) -> list[PaymentErrorRow]:
        """The newest payment errors of the last hour."""
        since = self._clock.now() - HOUR
        return await self._reader.read(
            lambda conn: payment_error_rows(conn, since, PUSHED_ERROR_ROWS)
        )

    async def store(self, metrics: LiveMetrics) -> None:
        """Replace the stored snapshot.

        SQLite: in the writer's turn (one writer at a time), run by the writer
        process itself (a round trip; in a thread of the server it took turns on the
        GIL with the event loop while the writer waited). PostgreSQL: in a transaction
        of its own beside the writer's, as the rollups do: the table is nobody else's,
        and a job in the writer's turn paused ingestion's group commits several times
        a second under load (the snapshot changes with every batch). Without waiting
        for its commit to reach the disk: it is derived data, replaced within a
        fraction of a second and stored afresh when a process starts leading, so a
        crash can lose nothing that is not recomputed.
        """
        job = partial(_store, metrics, self._clock.now())
        if self._reader.engine.dialect.name == "postgresql":
            await self._reader.read(job)  # committed at the end of the read
        else:
            await self._writer.run_job(job, notify=False, portable=True)


def _store(metrics: LiveMetrics, now: datetime, conn: Connection) -> None:
    """Store ``metrics`` as the snapshot of ``now`` (module level: the writer process runs it)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL synchronous_commit TO off")
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SNAPSHOT_LOCK})")
    store_snapshot(conn, metrics, now)
