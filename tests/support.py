"""Test support: a real server on a free port, a controllable clock, databases."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import uvicorn
from sqlalchemy import text
from starlette.types import ASGIApp

from nilemetrics.config import Settings
from nilemetrics.protocol.frames import FRAME_DATA, validate_frame
from nilemetrics.protocol.names import WsEvent
from nilemetrics.server.app import create_app
from nilemetrics.server.db import make_engine
from nilemetrics.server.tables import metadata

PG_ADMIN_URL = os.environ.get(
    "NILEMETRICS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def pushed_frame(text: str | bytes) -> dict[str, Any]:
    """A WebSocket frame the server pushed, checked against the contract's model, as JSON.

    Every test that reads frames reads them through this (or :func:`pushed_data`):
    a frame whose shape drifts from ``nilemetrics.protocol`` fails the test.
    """
    validate_frame(text.decode() if isinstance(text, bytes) else text)
    frame: dict[str, Any] = json.loads(text)
    return frame


def pushed_data(event: str, data: Any) -> Any:
    """The ``data`` of a Socket.IO frame, checked like :func:`pushed_frame`."""
    validate_frame(json.dumps({"event": event, "data": data}))
    return data


#: The events whose frames the server pushes (all checked by ``pushed_frame``).
PUSHED_EVENTS = tuple(str(event) for event in FRAME_DATA if event != WsEvent.ERROR)


class FakeClock:
    """A clock that only moves when told to (thread-safe enough for tests)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The fake current time."""
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        with self._lock:
            self._now += timedelta(seconds=seconds)


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    """A running server: its URLs, token, clock and settings."""

    base_url: str
    ws_url: str
    token: str
    clock: FakeClock
    settings: Settings
    server: uvicorn.Server

    @property
    def auth(self) -> dict[str, str]:
        """The Authorization header for dashboard endpoints."""
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def state(self):  # type: ignore[no-untyped-def]
        """The server's internal state (writer, hub) for white-box checks."""
        return self.server.config.app.state.nm  # type: ignore[union-attr]


@contextlib.contextmanager
def serve_app(app: ASGIApp, port: int | None = None) -> Iterator[uvicorn.Server]:
    """Run an ASGI app under uvicorn in a thread (on ``port`` or a free one) for the block."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port or free_port(), log_level="warning", lifespan="on",
        ws="websockets-sansio",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("server failed to start")
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start within 20 s")
        time.sleep(0.02)
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@contextlib.contextmanager
def run_server(settings: Settings, clock: FakeClock | None = None) -> Iterator[LiveServer]:
    """Run create_app(settings) under uvicorn in a thread until the block ends."""
    clock = clock or FakeClock()
    with serve_app(create_app(settings, clock=clock)) as server:
        port = server.config.port
        yield LiveServer(
            base_url=f"http://127.0.0.1:{port}",
            ws_url=f"ws://127.0.0.1:{port}/api/metrics/ws",
            token=settings.dashboard_token[0],
            clock=clock,
            settings=settings,
            server=server,
        )


def pg_available() -> str | None:
    """None if the test PostgreSQL answers, else why not."""
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except Exception as exc:  # any failure means "not usable here"
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"


@contextlib.contextmanager
def temporary_pg_database() -> Iterator[str]:
    """Create a throw-away database on the test server; yield its SQLAlchemy URL."""
    name = f"nm_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def truncate_all(url: str) -> None:
    """Empty every table (keeping the schema) between tests on a shared database."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            names = ", ".join(t.name for t in metadata.sorted_tables)
            if engine.dialect.name == "postgresql":
                conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
            else:
                for table in metadata.sorted_tables:
                    conn.execute(table.delete())
    finally:
        engine.dispose()


class TcpProxy:
    """A loopback TCP forwarder whose plug can be pulled (a database going away)."""

    def __init__(self, target_port: int, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        """Accept and forward connections until stopped."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Refuse new connections and cut every open one."""
        if self._listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would not.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
