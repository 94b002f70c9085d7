"""`nilemetrics serve`'s connection limits: idle, half-sent, oversized, too many."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
import websockets.sync.client

from nilemetrics.config import Settings
from nilemetrics.server.app import create_app
from nilemetrics.server.http_guard import uvicorn_limits
from tests.api.journeys import P
from tests.support import FakeClock, free_port, pushed_frame

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@contextlib.contextmanager
def guarded_server(settings: Settings) -> Iterator[int]:
    """The app under uvicorn configured as `nilemetrics serve` does; yields the port."""
    config = uvicorn.Config(
        create_app(settings, clock=FakeClock()), host="127.0.0.1", port=free_port(),
        log_level="warning", ws="websockets-sansio", **uvicorn_limits(settings),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield config.port
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _limited(settings: Settings, **update: object) -> Settings:
    return settings.model_copy(update={"http_request_timeout": 1.0, **update})


def test_idle_connection_gets_408_and_is_closed(settings: Settings) -> None:
    """A connection that sends nothing is answered 408 and closed after the request timeout."""
    with guarded_server(_limited(settings)) as port, _connect(port) as sock:
        began = time.monotonic()
        answer = _read_all(sock)
        took = time.monotonic() - began
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert answer.endswith(b"\r\n\r\nrequest not received in time")
    assert 0.9 < took < 2.0, took


def test_trickled_headers_get_408_in_time(settings: Settings) -> None:
    """Headers sent a byte at a time do not keep the connection: 408 at the timeout."""
    with guarded_server(_limited(settings)) as port, _connect(port) as sock:
        began = time.monotonic()
        request = f"POST {P}/session/start HTTP/1.1\r\nHost: x\r\nX-Slow: ".encode()
        sock.sendall(request)
        sock.settimeout(0.1)
        answer = b""
        while time.monotonic() - began < 3:
            try:
                sock.sendall(b"a")
                answer += sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if answer:
                break
        took = time.monotonic() - began
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert took < 2.0, took


def test_oversized_headers_get_431(settings: Settings) -> None:
    """Headers over the limit are answered 431, the connection closed, the request not run."""
    with guarded_server(settings) as port, _connect(port) as sock:
        sock.sendall(f"POST {P}/session/start HTTP/1.1\r\nHost: x\r\n".encode())
        with contextlib.suppress(OSError):  # the server may close while we still send
            for _ in range(64):
                sock.sendall(b"X-Big: " + b"a" * 1024 + b"\r\n")
            sock.sendall(b"\r\n")
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert answer.endswith(b"\r\n\r\nrequest headers too large")


def test_at_the_cap_a_new_request_evicts_the_oldest_idle_connection(
    settings: Settings,
) -> None:
    """At the connection cap, a client sending its request at once is served: an idle one goes."""
    limited = settings.model_copy(update={"http_max_connections": 5})
    with guarded_server(limited) as port:
        idle = [_connect(port) for _ in range(5)]
        try:
            time.sleep(0.2)
            began = time.monotonic()
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                ok = http.post(f"{P}/session/start")
            # Not waiting for a connection to time out (the idle ones have sent nothing:
            # 15 s request timeout); 2 s leaves room for a loaded CI machine.
            assert time.monotonic() - began < 2.0
            assert ok.status_code == 200
            idle[0].settimeout(2)
            assert idle[0].recv(100) == b""  # the oldest idle connection was closed
        finally:
            for sock in idle:
                sock.close()


def test_at_the_cap_with_every_connection_busy_503_then_room_again(settings: Settings) -> None:
    """Cap reached by half-sent requests: a new request gets 503 at once; after the timeout, 200."""
    limited = _limited(settings, http_max_connections=5)
    with guarded_server(limited) as port:
        busy = [_connect(port) for _ in range(5)]
        try:
            for sock in busy:  # headers complete, the body never comes
                sock.sendall(f"POST {P}/session/start HTTP/1.1\r\nHost: x\r\n"
                             "Content-Type: application/json\r\n"
                             "Content-Length: 10\r\n\r\n{".encode())
            time.sleep(0.2)
            began = time.monotonic()
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                refused = http.post(f"{P}/session/start")
            assert time.monotonic() - began < 0.5
            assert refused.status_code == 503
            assert refused.text == "too many connections; retry later"
            assert refused.headers["retry-after"] == "1"
            time.sleep(2.0)  # the half-sent requests time out (1 s); the refusal lingers 1 s
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                ok = http.post(f"{P}/session/start")
            assert ok.status_code == 200
        finally:
            for sock in busy:
                sock.close()


def test_normal_requests_and_websocket_still_work(settings: Settings) -> None:
    """Under the limits, kept-alive requests and the WebSocket work as before."""
    with guarded_server(_limited(settings)) as port:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            for _ in range(3):
                response = http.post(f"{P}/session/start")
                assert response.status_code == 200
                time.sleep(0.5)  # together longer than the request timeout
        token = settings.dashboard_token[0]
        url = f"ws://127.0.0.1:{port}{P}/ws?token={token}"
        with websockets.sync.client.connect(url) as ws:
            first = pushed_frame(ws.recv(timeout=5))
            assert first["event"] in {"metrics-update", "payment-errors-update"}
            time.sleep(1.5)  # past the request timeout: a WebSocket is not a slow request
            ws.send(json.dumps({"event": "join-seller-dashboard", "data": "s1"}))
            ws.send("not json")
            while (frame := pushed_frame(ws.recv(timeout=5)))["event"] != "error":
                pass
            assert frame == {"event": "error", "data": {"message": "unknown or malformed frame"}}
