"""`nilemetrics demo`: everything starts together and nothing is left running."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import Invoke


def _demo_process(*args: str) -> subprocess.Popen[str]:
    """``nilemetrics demo --no-dashboard ARGS`` as a child process, output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "nilemetrics", "demo", "--no-dashboard", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_demo_without_dashboard_runs_and_cleans_up(nm: Invoke) -> None:
    """--no-dashboard --duration 3s: live lines, a summary, then no server, threads or files."""
    result = nm("demo", "--no-dashboard", "--duration", "3s", "--shoppers", "6",
                "--speed", "50", "--seed", "3")
    assert result.exit_code == 0, result.output
    workdir = Path(re.search(r"demo database in (\S+)", result.stderr).group(1))  # type: ignore[union-attr]
    port = int(re.search(r"server on http://127\.0\.0\.1:(\d+)", result.stderr).group(1))  # type: ignore[union-attr]
    lines = [line for line in result.stdout.splitlines() if "live sessions" in line]
    assert lines, result.stdout
    assert any(re.search(r"live sessions\s+[1-9]", line) for line in lines)
    assert "Demo summary" in result.stdout
    assert not workdir.exists()
    assert not _port_open(port)
    left = [t.name for t in threading.enumerate() if t.name.startswith("nm-demo")]
    assert not left, (left, result.stderr)


def test_demo_stops_on_ctrl_c(tmp_path: Path) -> None:
    """SIGINT (Ctrl-C) stops server and shoppers, removes the database, exits cleanly."""
    proc = _demo_process("--shoppers", "4", "--speed", "50")
    deadline = time.monotonic() + 30
    seen = ""
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        seen += line
        if "live sessions" in line:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    workdir = Path(re.search(r"demo database in (\S+)", err).group(1))  # type: ignore[union-attr]
    port = int(re.search(r"server on http://127\.0\.0\.1:(\d+)", err).group(1))  # type: ignore[union-attr]
    assert "live sessions" in seen
    assert "Demo summary" in out
    assert not workdir.exists()
    assert not _port_open(port)
    assert "Traceback" not in err


def test_demo_bad_duration(nm: Invoke) -> None:
    """A bad --duration is one line, before anything starts."""
    result = nm("demo", "--no-dashboard", "--duration", "soon")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: --duration: invalid duration 'soon'")


def test_demo_serves_the_shop_wired_to_its_server(tmp_path: Path) -> None:
    """The demo shop loads the tracker from the demo server, which accepts its origin."""
    proc = _demo_process("--shoppers", "0", "--shop-port", "0")
    try:
        assert proc.stderr is not None
        seen = ""
        deadline = time.monotonic() + 30
        while "demo shop on" not in seen and time.monotonic() < deadline:
            seen += proc.stderr.readline()
        server = re.search(r"server on (http://127\.0\.0\.1:\d+)", seen)
        shop = re.search(r"demo shop on (http://127\.0\.0\.1:\d+)", seen)
        assert server and shop, seen
        home = httpx.get(shop.group(1) + "/", timeout=10)
        assert home.status_code == 200
        assert f'src="{server.group(1)}/tracker.js" data-api="{server.group(1)}"' in home.text
        assert 'data-page-type="homepage"' in home.text
        script = httpx.get(server.group(1) + "/tracker.js", timeout=10)
        assert script.status_code == 200 and "nilemetrics" in script.text
        event = httpx.post(
            server.group(1) + "/api/metrics/events",
            content='{"events": [{"type": "page-visit", "pageType": "homepage",'
                    ' "sessionId": "0b6f3e0e-8a51-4c55-9d0e-8e7c0f1d2a3b"}]}',
            headers={"Origin": shop.group(1), "Content-Type": "text/plain"},
            timeout=10,
        )
        assert event.status_code == 200
        assert event.headers["access-control-allow-origin"] == shop.group(1)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_demo_stops_cleanly_on_sigterm_and_sighup(sig: signal.Signals) -> None:
    """SIGTERM / SIGHUP stop server and shoppers and remove the database, like Ctrl-C."""
    proc = _demo_process("--shoppers", "4", "--speed", "50")
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if "live sessions" in proc.stdout.readline():
            break
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    workdir = Path(re.search(r"demo database in (\S+)", err).group(1))  # type: ignore[union-attr]
    port = int(re.search(r"server on http://127\.0\.0\.1:(\d+)", err).group(1))  # type: ignore[union-attr]
    assert "stopping…" in err and "Demo summary" in out
    assert not workdir.exists()
    assert not _port_open(port)
    assert "Traceback" not in err


def _in_terminal(args: list[str]) -> tuple[int, int]:
    """Start ``python -m nilemetrics ARGS`` on a new pseudo-terminal: (pid, terminal fd)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once, nothing else
        os.execvpe(sys.executable, [sys.executable, "-m", "nilemetrics", *args],
                   {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30"})
    return pid, fd


def _read_until(fd: int, needle: bytes, seen: bytearray, timeout: float) -> bool:
    """Read the terminal into ``seen`` until ``needle`` shows up (True) or EOF/timeout."""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                return needle in seen
            if not chunk:
                return needle in seen
            seen.extend(chunk)
    return needle in seen


ALT_SCREEN_ON, ALT_SCREEN_OFF = b"\x1b[?1049h", b"\x1b[?1049l"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_dashboard_demo_restores_terminal_on_signal(sig: signal.Signals) -> None:
    """demo with its dashboard, sent SIGTERM/SIGHUP: alternate screen left, files removed."""
    pid, fd = _in_terminal(["demo", "--shoppers", "2", "--shop-port", "0"])
    seen = bytearray()
    try:
        assert _read_until(fd, ALT_SCREEN_ON, seen, 60), bytes(seen)
        assert _read_until(fd, b"Homepage", seen, 30), bytes(seen)
        os.kill(pid, sig)
        _read_until(fd, b"Demo summary", seen, 60)
        _, status = os.waitpid(pid, 0)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.close(fd)
    text = bytes(seen).decode("utf-8", "replace")
    assert os.waitstatus_to_exitcode(status) == 0, text[-2000:]
    assert seen.rindex(ALT_SCREEN_OFF) > seen.rindex(ALT_SCREEN_ON)
    workdir = re.search(r"demo database in (\S+)", text)
    assert workdir is not None and not Path(workdir.group(1)).exists()
    assert "Traceback" not in text


def test_watch_restores_terminal_on_sigterm() -> None:
    """watch (no server reachable), sent SIGTERM: exits 0 with the terminal restored."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pid, fd = _in_terminal(["watch", "--url", f"http://127.0.0.1:{port}", "--token", "t"])
    seen = bytearray()
    try:
        assert _read_until(fd, ALT_SCREEN_ON, seen, 60), bytes(seen)
        assert _read_until(fd, b"Homepage", seen, 30), bytes(seen)
        os.kill(pid, signal.SIGTERM)
        _read_until(fd, b"\x00never\x00", seen, 10)  # to EOF
        _, status = os.waitpid(pid, 0)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, bytes(seen)[-2000:]
    assert seen.rindex(ALT_SCREEN_OFF) > seen.rindex(ALT_SCREEN_ON)
