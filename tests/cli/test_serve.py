"""`nilemetrics serve` as a user runs it: its log lines, its start-up checks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import websockets.sync.client as ws_client

from tests.support import free_port

SECRET = "s3cret-dashboard-token-xyz"


def _serve(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    """``nilemetrics serve ARGS`` as a child process, stdout and stderr merged."""
    return subprocess.Popen(
        [sys.executable, "-m", "nilemetrics", "serve", *args],
        text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200",
             "NILEMETRICS_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}"},
    )


def _wait_up(port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)


def test_access_lines_masked_in_real_log(tmp_path: Path) -> None:
    """uvicorn's own access format: the lines appear, tokens masked, never 'Logging error'."""
    port = free_port()
    proc = _serve(tmp_path, "--port", str(port), "--token", SECRET)
    try:
        _wait_up(port)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/healthz?token={SECRET}").status_code == 200
        assert httpx.get(f"{base}/healthz?x=1&tok%65n={SECRET}").status_code == 200
        # The server decodes the name: tok%65n is accepted as the token, and logged masked.
        with ws_client.connect(f"ws://127.0.0.1:{port}/api/metrics/ws?tok%65n={SECRET}") as ws:
            assert '"event"' in str(ws.recv(timeout=5))
        time.sleep(0.5)
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert "Logging error" not in output and "Traceback" not in output, output
    assert SECRET not in output
    assert '"GET /healthz?token=*** HTTP/1.1" 200' in output, output
    assert '"GET /healthz?x=1&tok%65n=*** HTTP/1.1" 200' in output, output
    assert '"WebSocket /api/metrics/ws?tok%65n=***" [accepted]' in output, output


@pytest.mark.parametrize("interval", ["0", "0.5s"])
def test_serve_refuses_a_cleanup_interval_below_one_second(tmp_path: Path, interval: str) -> None:
    """--cleanup-interval 0 would busy-loop: one line, exit 1, nothing started."""
    result = subprocess.run(
        [sys.executable, "-m", "nilemetrics", "serve", "--port", str(free_port()),
         "--cleanup-interval", interval],
        capture_output=True, text=True, timeout=30,
        env={**os.environ, "NILEMETRICS_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}"},
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: invalid setting: cleanup_interval: must be at least 1s (each tick queries the "
        f"database; a shorter one keeps the server busy), got {interval.removesuffix('s')}s"
    )
    assert not (tmp_path / "s.db").exists()


def test_serve_on_a_taken_port_fails_before_starting(tmp_path: Path) -> None:
    """A port in use: one line naming it, before migrating or claiming to serve."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "nilemetrics", "serve", "--port", str(port)],
            capture_output=True, text=True, timeout=30,
            env={**os.environ, "COLUMNS": "200",
                 "NILEMETRICS_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}"},
        )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: cannot listen on 127.0.0.1:{port}: the port is already in use (another "
        "nilemetrics serve?); stop it or pass another --port"
    )
    assert "serving on" not in result.stdout + result.stderr
    assert not (tmp_path / "s.db").exists()  # no migration ran
