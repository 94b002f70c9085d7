"""`nilemetrics serve` as a user runs it: its log lines, its start-up checks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
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
