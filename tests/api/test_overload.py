"""A database that hangs or is locked: prompt 503s, a bounded queue, nothing written late."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from nilemetrics.config import Settings
from nilemetrics.server.ingestion.commit import CommitGate
from tests.api.conftest import row_counts
from tests.api.journeys import P
from tests.support import FakeClock, LiveServer, TcpProxy, run_server

UNAVAILABLE = {"detail": "database unavailable; nothing was stored, retry later"}


def _visit(sid: str | None = None) -> dict[str, str]:
    return {"sessionId": sid or str(uuid.uuid4()), "pageType": "homepage"}


@contextlib.contextmanager
def sqlite_locked(settings: Settings) -> Iterator[sqlite3.Connection]:
    """Another connection holds the SQLite database's write lock for the block."""
    path = str(settings.database_url).removeprefix("sqlite:///")
    locker = sqlite3.connect(path, isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")
        yield locker
    finally:
        locker.execute("ROLLBACK")
        locker.close()


class PausableProxy(TcpProxy):
    """A TCP forwarder that can freeze traffic both ways (a SIGSTOPped database)."""

    def __init__(self, target_port: int) -> None:
        super().__init__(target_port)
        self.flowing = threading.Event()
        self.flowing.set()

    def _pump(self, src: Any, dst: Any) -> None:  # type: ignore[override]
        try:
            while data := src.recv(65536):
                self.flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)


def _timed_post(
    http: httpx.Client, path: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = http.post(path, json=body, headers=headers)
    return response, time.monotonic() - started


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json() == UNAVAILABLE
    assert response.headers["retry-after"] == "1"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_lock_answers_503_within_the_busy_timeout(
    server: LiveServer, client: httpx.Client, db: Engine, settings: Settings
) -> None:
    """A SQLite lock held elsewhere: 503 within the write timeout, even behind a job."""
    client.post(f"{P}/session/start")
    before = row_counts(db)
    assert settings.sqlite_busy_timeout == 2.0 and settings.write_timeout == 5.0
    with sqlite_locked(settings), ThreadPoolExecutor(4) as pool:
        # A job (cleanup) queued first: the events wait behind it in the writer.
        job = pool.submit(
            _timed_post, client, f"{P}/cleanup-sessions", None, server.auth
        )
        time.sleep(0.1)
        singles = [pool.submit(_timed_post, client, f"{P}/track/page-visit", _visit())
                   for _ in range(2)]
        batch = pool.submit(_timed_post, client, f"{P}/events",
                            {"events": [{"type": "page-visit", **_visit()}]})
        for future in [*singles, batch]:
            response, took = future.result()
            _assert_unavailable(response)
            assert took < settings.write_timeout + 0.5, took
        job_response, _ = job.result()
    headers = job_response.headers
    assert (job_response.status_code, headers["retry-after"]) == (503, "1")
    assert row_counts(db) == before
    ok = client.post(f"{P}/track/page-visit", json=_visit())
    assert (ok.status_code, ok.json()) == (200, {"success": True})


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_hung_sqlite_writer_answers_503_in_time_and_writes_nothing_later(
    settings: Settings, db: Engine
) -> None:
    """A writer stuck on a lock: 503 after write_timeout; after release nothing of it is written."""
    settings = settings.model_copy(update={"sqlite_busy_timeout": 30.0, "write_timeout": 1.0})
    with run_server(settings, FakeClock()) as live, \
            httpx.Client(base_url=live.base_url, timeout=30) as http:
        http.post(f"{P}/session/start")
        before = row_counts(db)
        with sqlite_locked(settings), ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(_timed_post, http, f"{P}/track/page-visit", _visit())
                       for _ in range(5)]
            futures.append(pool.submit(
                _timed_post, http, f"{P}/events",
                {"events": [{"type": "page-visit", **_visit()} for _ in range(3)]},
            ))
            for future in futures:
                response, took = future.result()
                _assert_unavailable(response)
                assert 0.9 < took < 2.0, took
        # The lock is gone: the abandoned batch is rolled back, nothing queued is left.
        ok = http.post(f"{P}/track/page-visit", json=_visit())
        assert (ok.status_code, ok.json()) == (200, {"success": True})
        time.sleep(0.5)
        after = row_counts(db)
        assert after["page_visits"] == before["page_visits"] + 1
        assert after["user_sessions"] == before["user_sessions"] + 1
        assert live.state.writer._queued == 0
        # Answered or expired, no request is kept for its deadline any more.
        assert not live.state.writer._deadlines


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_full_writer_queue_answers_503_at_once(settings: Settings, db: Engine) -> None:
    """With the writer stuck and its queue full, the next request gets 503 immediately."""
    settings = settings.model_copy(
        update={"sqlite_busy_timeout": 30.0, "write_timeout": 4.0, "writer_queue_max": 500}
    )
    with run_server(settings, FakeClock()) as live, \
            httpx.Client(base_url=live.base_url, timeout=30) as http:
        http.post(f"{P}/session/start")
        time.sleep(0.5)  # the hub has stored the new numbers: no job joins the queue
        before = row_counts(db)
        with sqlite_locked(settings), ThreadPoolExecutor(2) as pool:
            stuck = pool.submit(_timed_post, http, f"{P}/track/page-visit", _visit())
            _wait_for(lambda: bool(live.state.writer._in_flight))
            queued: Future[tuple[httpx.Response, float]] = pool.submit(
                _timed_post, http, f"{P}/events",
                {"events": [{"type": "session-heartbeat", "sessionId": str(uuid.uuid4())}
                            for _ in range(500)]},
            )
            _wait_for(lambda: live.state.writer._queued == 500)
            response, took = _timed_post(http, f"{P}/track/page-visit", _visit())
            _assert_unavailable(response)
            assert took < 0.5, took
            _assert_unavailable(queued.result()[0])
            _assert_unavailable(stuck.result()[0])
        ok = http.post(f"{P}/track/page-visit", json=_visit())
        assert ok.status_code == 200
        time.sleep(0.3)
        assert row_counts(db)["page_visits"] == before["page_visits"] + 1
        assert row_counts(db)["user_sessions"] == before["user_sessions"] + 1


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_frozen_postgres_answers_503_in_time_and_writes_nothing_later(
    settings: Settings, db: Engine
) -> None:
    """PostgreSQL frozen: events and reads get 503 after write_timeout; nothing written on thaw."""
    proxy = PausableProxy(5432)
    proxy.start()
    url = str(settings.database_url).replace(":5432/", f":{proxy.port}/")
    settings = settings.model_copy(update={"database_url": url, "write_timeout": 1.0})
    try:
        with run_server(settings, FakeClock()) as live, \
                httpx.Client(base_url=live.base_url, timeout=30) as http:
            http.post(f"{P}/session/start")
            before = row_counts(db)
            proxy.flowing.clear()
            with ThreadPoolExecutor(4) as pool:
                futures = [pool.submit(_timed_post, http, f"{P}/track/page-visit", _visit())
                           for _ in range(4)]
                for future in futures:
                    response, took = future.result()
                    _assert_unavailable(response)
                    assert 0.9 < took < 2.0, took
            began = time.monotonic()
            read = http.get(f"{P}/live-metrics", headers=live.auth)
            _assert_unavailable(read)
            assert time.monotonic() - began < 2.0
            proxy.flowing.set()
            deadline = time.monotonic() + 20
            while True:
                ok = http.post(f"{P}/track/page-visit", json=_visit())
                if ok.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert (ok.status_code, ok.json()) == (200, {"success": True})
            time.sleep(0.5)
            after = row_counts(db)
            assert after["page_visits"] == before["page_visits"] + 1
            assert live.state.writer._queued == 0
            assert not live.state.writer._deadlines
    finally:
        proxy.flowing.set()
        proxy.stop()


def test_commit_gate_commit_and_abandon_exclude_each_other() -> None:
    """Per batch, the gate lets exactly one of commit and abandon through."""
    for gate in (CommitGate(), CommitGate.shared()):
        gate.open(1)
        assert gate.abandon(1) is True
        assert gate.commit(1) is False
        gate.open(2)
        assert gate.commit(2) is True
        assert gate.abandon(2) is False
        assert gate.abandon(1) is False  # an old batch is never abandoned by mistake
        gate.close()


def _wait_for(predicate: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)
