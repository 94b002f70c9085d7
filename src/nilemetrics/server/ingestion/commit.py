"""One batch, one write transaction: in the writer process, or in a thread of the server.

The commit gate decides between committing a batch and the server giving up on
it; on SQLite the WAL keeper stops the WAL from filling a small disk; a refused
batch is bisected to find the event the database refuses.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import mmap
import os
import sqlite3
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from nilemetrics.server.db import describe_db_error, write_options
from nilemetrics.server.ingestion.apply import apply_batch
from nilemetrics.server.ingestion.errors import Abandoned
from nilemetrics.server.ingestion.events import BatchOutcome, TrackedEvent
from nilemetrics.server.notify import NOTIFY_CHANNEL, NOTIFY_SQL

log = logging.getLogger(__name__)

T = TypeVar("T")

_RUNNING, _COMMITTING, _ABANDONED = 0, 1, 2
_GATE = struct.Struct("qq")


class CommitGate:
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
    def shared(cls) -> CommitGate:
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
        """Writer side: may batch ``seq`` be committed? (After yes it can't be abandoned.)

        A later batch already opened means this one had begun its commit (the
        server sends the next batch only then): yes again (SQLite's second try
        after a full disk), leaving the later batch's phase as it is.
        """
        with self._locked():
            current, phase = _GATE.unpack_from(self._map, 0)
            if current > seq:
                return True
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


def is_disk_full(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None) or exc
    if getattr(orig, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return True
    return getattr(orig, "sqlstate", None) == "53100"  # PostgreSQL: disk_full


class WalKeeper:
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


def is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated




def send_notify(conn: Connection, payload: str) -> None:
    # Delivered at commit to every process LISTENing on this database.
    conn.exec_driver_sql(NOTIFY_SQL, (NOTIFY_CHANNEL, payload))


def apply_in_transaction(
    engine: Engine,
    events: list[TrackedEvent],
    notify: bool,
    gate: CommitGate,
    seq: int,
    wal: WalKeeper,
    committing: Callable[[], None] | None = None,
) -> BatchOutcome:
    """Apply one batch in one write transaction (in the writer thread or process).

    Raises :class:`Abandoned` (after rolling back) if the server gave up on it.
    ``committing`` is called once the gate has let the batch commit, right before
    COMMIT (the writer process tells the server, which sends the next batch).
    SQLite: a full disk gets one more try after folding the WAL back.
    """
    try:
        outcome = apply_once(engine, events, notify, gate, seq, committing)
    except OperationalError as exc:
        if wal.wal is None or not is_disk_full(exc) or not wal.checkpoint(engine):
            raise
        log.warning("disk full; WAL folded back, writing the batch again")
        outcome = apply_once(engine, events, notify, gate, seq, committing)
    wal.after_commit(engine)
    return outcome


def apply_once(
    engine: Engine, events: list[TrackedEvent], notify: bool, gate: CommitGate, seq: int,
    committing: Callable[[], None] | None = None,
) -> BatchOutcome:
    with engine.connect() as conn:
        write_options(conn)
        with conn.begin():
            outcome = apply_batch(conn, events, notify=notify)
            if not gate.commit(seq):
                raise Abandoned  # leaving the block rolls back
            if committing is not None:
                committing()
        return outcome


def run_job(engine: Engine, job: Callable[[Connection], T], notify: bool) -> T:
    """Run ``job(conn)`` in a write transaction of its own (in the writer thread or process).

    ``notify`` (PostgreSQL): tell the other server processes, at commit, that data changed.
    """
    with engine.connect() as conn:
        write_options(conn)
        with conn.begin():
            result = job(conn)
            if notify and engine.dialect.name == "postgresql":
                send_notify(conn, "metrics")
        return result


def first_refused(engine: Engine, events: list[TrackedEvent]) -> int | None:
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
                if is_unavailable(exc):
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
