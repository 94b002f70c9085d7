"""Slow clients against `nilemetrics serve`: is a normal request still answered, how fast?

Starts a server on loopback (SQLite in a temporary directory, open-files limit
1,024 as on a default Linux account), opens N connections that send nothing or
trickle a request's headers a byte at a time (reopening any the server closes),
and meanwhile sends a normal request (POST session/start on a new connection)
twice a second. Then it sends 8 requests with 64 MiB of headers each at once and
records the answers and the server's memory. Runs twice: ``nilemetrics serve`` as
shipped, and the same app under uvicorn's defaults (the code before the
connection limits).

    python -m benchmarks.slowloris [--connections 1100] [--duration 20]

Loopback only, at most 4,000 connections and 120 s per run; it stops by itself.
Writes results/slowloris.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).parent
HOST = "127.0.0.1"
SERVER_FD_LIMIT = 1024

#: The app under plain uvicorn: what `serve` ran before it had connection limits.
UNGUARDED = """
import sys, uvicorn
from nilemetrics.config import Settings
from nilemetrics.server.app import create_app
uvicorn.run(create_app(Settings()), host="127.0.0.1", port=int(sys.argv[1]),
            log_level="warning", access_log=False, ws="websockets-sansio")
"""


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _limit_fds() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (SERVER_FD_LIMIT, hard))


@contextlib.contextmanager
def server(guarded: bool, tmp: Path) -> Iterator[tuple[int, int]]:
    """Run the server (guarded: ``nilemetrics serve``) until the block ends; yield port, pid."""
    port = free_port()
    env = {
        **os.environ,
        "NILEMETRICS_DATA_DIR": str(tmp / "data"),
        "NILEMETRICS_CONFIG_DIR": str(tmp / "config"),
        "NILEMETRICS_DASHBOARD_TOKEN": "benchmark-token-0123456789",
    }
    if guarded:
        cmd = [sys.executable, "-m", "nilemetrics", "serve", "--host", HOST, "--port",
               str(port), "--log-level", "warning"]
    else:
        cmd = [sys.executable, "-c", UNGUARDED, str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=_limit_fds)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError("server exited")
            try:
                httpx.get(f"http://{HOST}:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not start") from None
                time.sleep(0.2)
        yield port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _slow_client(port: int, trickle: bool, stop: float, stats: dict[str, int]) -> None:
    """Hold one connection open doing nothing useful; reopen it when the server closes it."""
    while time.monotonic() < stop:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 5)
        except (OSError, TimeoutError):
            stats["connect_failed"] += 1
            await asyncio.sleep(1)
            continue
        stats["opened"] += 1
        try:
            if trickle:
                writer.write(b"POST /api/metrics/session/start HTTP/1.1\r\nHost: x\r\nX-A: ")
            while time.monotonic() < stop:
                if trickle:
                    writer.write(b"a")
                    await writer.drain()
                # Wakes at once if the server answers or closes.
                with contextlib.suppress(TimeoutError):
                    if not await asyncio.wait_for(reader.read(65536), 1):
                        break
        except OSError:
            pass
        finally:
            stats["closed_by_server"] += time.monotonic() < stop
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await asyncio.sleep(0.1)  # then open it again (gently: the machine is shared)


async def _probe(port: int, stop: float, results: list[dict[str, Any]]) -> None:
    """A normal request on a fresh connection twice a second; record answer and time."""
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", timeout=5,
                                 limits=httpx.Limits(max_keepalive_connections=0)) as http:
        while time.monotonic() < stop:
            began = time.monotonic()
            try:
                response = await http.post("/api/metrics/session/start")
                status: int | str = response.status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            results.append({"at": round(began - stop, 2), "status": status,
                            "seconds": round(time.monotonic() - began, 3)})
            await asyncio.sleep(max(0.0, 0.5 - (time.monotonic() - began)))


async def attack(port: int, connections: int, duration: float) -> dict[str, Any]:
    """N slow clients for ``duration`` seconds while probing; a summary of the probes."""
    stop = time.monotonic() + duration
    stats = {"opened": 0, "closed_by_server": 0, "connect_failed": 0}
    probes: list[dict[str, Any]] = []
    clients = [_slow_client(port, i % 2 == 1, stop, stats) for i in range(connections)]
    await asyncio.sleep(0)
    await asyncio.gather(_delayed_probe(port, stop, probes), *clients)
    answered = [p for p in probes if isinstance(p["status"], int)]
    ok = [p for p in probes if p["status"] == 200]
    statuses: dict[str, int] = {}
    for p in probes:
        statuses[str(p["status"])] = statuses.get(str(p["status"]), 0) + 1
    return {
        "probes": len(probes),
        "answered": len(answered),
        "ok_200": len(ok),
        "statuses": statuses,
        "answer_seconds_median": (
            round(statistics.median(p["seconds"] for p in answered), 3) if answered else None
        ),
        "answer_seconds_max": round(max(p["seconds"] for p in answered), 3) if answered else None,
        "ok_seconds_median": (
            round(statistics.median(p["seconds"] for p in ok), 3) if ok else None
        ),
        "slow_connections": stats,
    }


async def _delayed_probe(port: int, stop: float, probes: list[dict[str, Any]]) -> None:
    await asyncio.sleep(2)  # let the slow clients connect first
    await _probe(port, stop, probes)


def _rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _big_headers_request(port: int, mib: int) -> str:
    """One request with ``mib`` MiB of headers; the status line answered, or what happened."""
    line = b"X-Big: " + b"a" * (1024 * 1024 - 9) + b"\r\n"
    try:
        with socket.create_connection((HOST, port), timeout=30) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            with contextlib.suppress(OSError):
                for _ in range(mib):
                    sock.sendall(line)
                sock.sendall(b"\r\n")
            answer = sock.recv(200)
    except OSError as exc:
        return type(exc).__name__
    return answer.split(b"\r\n", 1)[0].decode(errors="replace") or "closed"


def big_headers(port: int, pid: int, requests: int = 8, mib: int = 64) -> dict[str, Any]:
    """``requests`` requests of ``mib`` MiB of headers at once: answers and server memory."""
    before = _rss_mb(pid)
    with ThreadPoolExecutor(requests) as pool:
        answers = list(pool.map(lambda _: _big_headers_request(port, mib), range(requests)))
    return {"requests": requests, "header_mib_each": mib, "answers": answers,
            "rss_mb_before": before, "rss_mb_after": _rss_mb(pid),
            "rss_mb_peak": _rss_mb(pid, "VmHWM")}


def main() -> None:
    """Run both servers under the same attack; print and store the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1100)
    parser.add_argument("--duration", type=float, default=20.0)
    args = parser.parse_args()
    connections = max(1, min(args.connections, 4000))
    duration = max(5.0, min(args.duration, 120.0))
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, connections + 512), hard))
    runs = {}
    for name, guarded in (("serve", True), ("plain_uvicorn", False)):
        with tempfile.TemporaryDirectory() as tmp, server(guarded, Path(tmp)) as (port, pid):
            runs[name] = asyncio.run(attack(port, connections, duration))
            runs[name]["big_headers"] = big_headers(port, pid)
        print(name, json.dumps(runs[name]))
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
                   f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "connections": connections,
        "duration_seconds": duration,
        "server_open_files_limit": SERVER_FD_LIMIT,
        "half_idle_half_trickling": True,
        "runs": runs,
    }
    out = HERE / "results" / "slowloris.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
