"""Leadership: of all the ``serve`` processes on one database, one runs the shared jobs.

Every worker process, on every host, serves requests and pushes to its own
WebSocket subscribers. Work on the database as a whole (ending idle sessions,
storing the ``live_metrics`` snapshot, and any later evaluator such as alerts
or rollups) must run once, not once per process: it runs in the *leader*.

On PostgreSQL the leader is the process holding a session-level advisory lock
(``pg_try_advisory_lock``) on a connection of its own. The others try again
every ``check_interval``; the leader pings its connection as often. When the
leader dies, its connection closes, PostgreSQL releases the lock and the next
try of another process takes it. When the database goes away, everyone loses
leadership (nobody can do database work anyway) and keeps retrying; once the
database is back, one of them is leader again. Nothing here raises: a worker
never crashes because the database is gone.

Two processes may briefly both believe they lead: one whose connection died
silently steps down at its next ping (``check_interval`` plus ``timeout``),
while PostgreSQL drops its session only when TCP keepalives give up (about
``SERVER_KEEPALIVE_S`` seconds, set below, longer than that), so normally the
old leader has stepped down before the lock is free. Shared jobs are written
so that an overlap is harmless (ending idle sessions is idempotent; snapshot
stores are serialised by a transaction lock).

On SQLite there is only ever one process: it is the leader from the start.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, LiteralString

import psycopg

from nilemetrics.server.db import DatabaseUnavailable
from nilemetrics.server.notify import psycopg_conninfo

log = logging.getLogger(__name__)

#: The advisory lock key of leadership (per database; next to the migration lock's).
LEADER_LOCK_KEY = 7_305_441_864

#: Seconds between a follower's attempts to take the lock, and between the leader's pings.
CHECK_INTERVAL = 2.0

#: Seconds an attempt or a ping may take before the connection counts as lost.
TIMEOUT = 5.0

#: About how long PostgreSQL keeps a silent leader's session (and so the lock):
#: server-side TCP keepalives of the lock's connection (10 s idle, then 3 probes 5 s
#: apart). Without them a leader whose host vanished would hold the lock for the
#: operating system's default, two hours.
SERVER_KEEPALIVE_S = 25
_SERVER_OPTIONS = "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3"

Job = Callable[[], Awaitable[Any]]


class Leadership:
    """Whether this process is the one leader among all processes on its database.

    ``url`` is the SQLAlchemy URL of a PostgreSQL database, or ``None`` for SQLite
    (a single process, always leader). :meth:`run` maintains leadership until it is
    cancelled; cancelling it closes the connection, which hands leadership over.
    """

    def __init__(
        self,
        url: str | None,
        *,
        check_interval: float = CHECK_INTERVAL,
        timeout: float = TIMEOUT,
        key: int = LEADER_LOCK_KEY,
    ) -> None:
        self._url = url
        self._check_interval = check_interval
        self._timeout = timeout
        self._key = key
        self._leader = False
        self._reachable = url is None
        self._elected: list[Job] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._changed = asyncio.Event()

    def is_leader(self) -> bool:
        """Whether this process should run the shared jobs right now."""
        return self._leader

    def database_reachable(self) -> bool:
        """Whether the leadership connection worked at its last attempt or ping."""
        return self._reachable

    def on_elected(self, job: Job) -> None:
        """Run ``job()`` (in the background) each time this process becomes the leader."""
        self._elected.append(job)

    async def wait_until_leader(self) -> None:
        """Return once this process is the leader."""
        while not self._leader:
            self._changed.clear()
            await self._changed.wait()

    async def periodic(self, interval: float, job: Job, *, name: str) -> None:
        """Run ``job()`` every ``interval`` seconds while this process leads; forever.

        A tick while another process leads is skipped. A failing job is logged and
        tried again at the next tick, never raised.
        """
        while True:
            await asyncio.sleep(interval)
            if not self._leader:
                continue
            try:
                await job()
            except DatabaseUnavailable as exc:
                log.warning("%s skipped: database unavailable (%s)", name, exc)
            except Exception:
                log.exception("%s failed", name)

    async def run(self) -> None:
        """Hold or seek leadership until cancelled."""
        try:
            if self._url is None:
                self._become_leader()
                await asyncio.Event().wait()  # held for the process's lifetime
            else:
                await self._seek(self._url)
        finally:
            self._step_down(None)
            self._reachable = False
            for task in self._background:
                task.cancel()

    async def _seek(self, url: str) -> None:
        conninfo = psycopg_conninfo(url)
        failing = False
        while True:
            try:
                conn = await self._ask(self._connect(conninfo))
                try:
                    if failing:
                        log.info("leadership: database reachable again")
                        failing = False
                    await self._hold_or_try(conn)
                finally:
                    await _close(conn)
            except Exception as exc:  # whatever it was, a worker keeps serving and retries
                self._reachable = False
                self._step_down(exc)
                if not failing:
                    log.warning("leadership: database unreachable (%s); retrying every %gs",
                                _describe(exc), self._check_interval)
                    failing = True
            await asyncio.sleep(self._check_interval)

    async def _connect(self, conninfo: str) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(
            conninfo,
            autocommit=True,
            connect_timeout=max(1, round(self._timeout)),
            # Which process leads is visible in pg_stat_activity.
            application_name=f"nilemetrics leader pid {os.getpid()}",
            options=_SERVER_OPTIONS,
            # Client-side keepalives: a vanished database host is noticed by the socket
            # too, not only by the next ping.
            keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3,
        )

    async def _hold_or_try(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Try for the lock (or ping while holding it) until the connection fails."""
        while True:
            if self._leader:
                await self._ask(_fetch(conn, "SELECT 1"))
                self._reachable = True
            else:
                got = await self._ask(
                    _fetch(conn, "SELECT pg_try_advisory_lock(%s)", self._key)
                )
                self._reachable = True
                if got:
                    self._become_leader()
            await asyncio.sleep(self._check_interval)

    async def _ask(self, operation: Awaitable[Any]) -> Any:
        """``await operation`` for at most ``timeout``; then step down at once.

        Not ``asyncio.wait_for``: it waits for the cancelled operation to finish, and
        psycopg's cancellation of a query on a dead link can take a while. The leader
        must stop leading first.
        """
        task = asyncio.ensure_future(operation)
        try:
            done, _ = await asyncio.wait({task}, timeout=self._timeout)
        except asyncio.CancelledError:
            task.cancel()  # not left running on a connection about to be closed
            task.add_done_callback(_retrieve)
            raise
        if task in done:
            return task.result()
        self._step_down(_NoAnswer(f"no answer within {self._timeout:g} s"))
        task.cancel()
        task.add_done_callback(_retrieve)
        raise _NoAnswer(f"no answer within {self._timeout:g} s")

    def _become_leader(self) -> None:
        self._leader = True
        self._changed.set()
        log.info("leadership: this process (pid %d) is the leader; it runs cleanup and "
                 "snapshot storage", os.getpid())
        for job in self._elected:
            task = asyncio.get_running_loop().create_task(self._run_elected(job))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _step_down(self, why: BaseException | None) -> None:
        if not self._leader:
            return
        self._leader = False
        self._changed.set()
        if why is not None:
            log.warning("leadership: this process (pid %d) is no longer the leader (%s)",
                        os.getpid(), _describe(why))

    async def _run_elected(self, job: Job) -> None:
        try:
            await job()
        except DatabaseUnavailable as exc:
            log.warning("leadership: start-up job skipped: database unavailable (%s)", exc)
        except Exception:
            log.exception("leadership: start-up job failed")


class _NoAnswer(Exception):
    """The database did not answer in time."""


async def _fetch(conn: psycopg.AsyncConnection[Any], query: LiteralString, *params: Any) -> Any:
    cursor = await conn.execute(query, params or None)
    row = await cursor.fetchone()
    return row[0] if row else None


async def _close(conn: psycopg.AsyncConnection[Any]) -> None:
    try:
        await conn.close()
    except Exception as exc:  # closing a broken connection: nothing more to do
        log.debug("leadership: closing the connection failed: %s", exc)


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved


def _describe(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()
    return first[0] if first else type(exc).__name__
