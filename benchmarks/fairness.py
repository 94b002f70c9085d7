"""One client's flood against another client's single events: the victim's latency.

A victim client (127.0.0.1) sends single page-visit events one after another and
times each answer, first with no other load, then while a flooding client
(127.0.0.2, another address on Linux loopback) keeps 64, then 256, batches of
500 page-visit events in flight (``POST /api/metrics/events``). The flooder is
a separate process and does not honour ``Retry-After``: a refused worker
(429/503) tries again after 50 ms (``--flood-backoff``). The victim's p50/p99
are over its answered (200) requests; refusals are counted apart (a 503 at once
is starvation too, not a fast answer). Every measurement runs twice, on
SQLite and on PostgreSQL (a throw-away database), each server a single
``nilemetrics serve`` worker.

    python -m benchmarks.fairness [--seconds 8] [--floods 0,64,256] [--runs 2]
    python -m benchmarks.fairness --server-src /tmp/fair-base/src --label before

``--server-src`` runs the server from another checkout (the code before a change:
its ``src`` goes first on the server's PYTHONPATH). Results are merged into
results/fairness.json under ``--label``. Loopback only; stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from benchmarks.ingest import free_port, server

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "fairness.json"
FLOOD_ADDRESS = "127.0.0.2"
BATCH = 500
PAGES = ["homepage", "search", "product", "checkout"]


def _flood_bodies(count: int) -> list[bytes]:
    """A few 500-event bodies over 500 sessions each, moving them between pages."""
    sessions = [str(uuid.uuid4()) for _ in range(BATCH)]
    return [
        json.dumps({"events": [
            {"type": "page-visit", "sessionId": sid, "pageType": PAGES[(i + k) % len(PAGES)]}
            for i, sid in enumerate(sessions)
        ]}).encode()
        for k in range(count)
    ]


async def _post(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    """Send one prepared HTTP/1.1 request; read the answer; return its status."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1])


async def _flood(
    host: str, port: int, concurrency: int, seconds: float, backoff: float
) -> dict[str, Any]:
    """Keep ``concurrency`` batches in flight from FLOOD_ADDRESS for ``seconds``.

    Plain asyncio streams with prepared requests: an HTTP client library cost
    the flooder most of a core, which this 2-core machine took from the server.
    """
    requests = [
        b"POST /api/metrics/events HTTP/1.1\r\nHost: %s:%d\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (host.encode(), port, len(body), body)
        for body in _flood_bodies(4)
    ]
    statuses: dict[str, int] = {}
    deadline = time.monotonic() + seconds

    async def worker(n: int) -> None:
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while time.monotonic() < deadline:
            try:
                if connection is None:
                    connection = await asyncio.open_connection(
                        host, port, local_addr=(FLOOD_ADDRESS, 0)
                    )
                status = await asyncio.wait_for(
                    _post(*connection, requests[n % len(requests)]), timeout=60
                )
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                statuses[type(exc).__name__] = statuses.get(type(exc).__name__, 0) + 1
                if connection is not None:
                    connection[1].close()
                connection = None
                await asyncio.sleep(0.1)
                continue
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if status in (429, 503):
                await asyncio.sleep(backoff)
            n += 1
        if connection is not None:
            connection[1].close()

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return statuses


def _victim(base: str, sessions: list[str], seconds: float) -> dict[str, Any]:
    """Single page-visits one after another for ``seconds``: latency percentiles."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=base, timeout=60) as http:
        n = 0
        while time.monotonic() < deadline:
            body = {"sessionId": sessions[n % len(sessions)], "pageType": PAGES[n % len(PAGES)]}
            started = time.perf_counter()
            response = http.post("/api/metrics/track/page-visit", json=body)
            took = (time.perf_counter() - started) * 1000
            key = str(response.status_code)
            if response.status_code == 200:
                latencies.append(took)
            statuses[key] = statuses.get(key, 0) + 1
            n += 1
    latencies.sort()
    if not latencies:
        return {"answered": 0, "p50_ms": None, "p99_ms": None, "statuses": statuses}
    return {
        "answered": len(latencies),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2),
        "statuses": statuses,
    }


def _measure(
    base: str, flood: int, seconds: float, warmup: float, backoff: float
) -> dict[str, Any]:
    """The victim's latency while ``flood`` batches are in flight (0: no flood)."""
    with httpx.Client(base_url=base) as http:
        sessions = [http.post("/api/metrics/session/start").json()["sessionId"]
                    for _ in range(20)]
    flooder = None
    if flood:
        flooder = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.fairness", "--flood-worker", base,
             str(flood), str(warmup + seconds), str(backoff)],
            stdout=subprocess.PIPE, text=True,
        )
        time.sleep(warmup)
    result = _victim(base, sessions, seconds)
    if flooder is not None:
        out, _ = flooder.communicate(timeout=120)
        result["flood_statuses"] = json.loads(out)
    # Let the server drain the last flood before the next measurement.
    time.sleep(3)
    return result


def main() -> None:
    """Measure the victim's latency per database and flood size; merge into the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood-worker", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--flood-backoff", type=float, default=0.05,
                        help="seconds a refused flooding worker waits before its next batch")
    parser.add_argument("--seconds", type=float, default=8, help="victim seconds per run")
    parser.add_argument("--warmup", type=float, default=3, help="flood seconds before timing")
    parser.add_argument("--floods", default="0,64,256", help="concurrent 500-event batches")
    parser.add_argument("--runs", type=int, default=2, help="repeats of each measurement")
    parser.add_argument("--only", action="append", choices=["sqlite", "postgres"])
    parser.add_argument("--server-src", help="run the server from this src directory")
    parser.add_argument("--label", default="after", help="key of this run in the results")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="admin URL; a throw-away database is created on that server")
    args = parser.parse_args()
    if args.flood_worker:
        url, concurrency, seconds, backoff = args.flood_worker
        host, port = url.removeprefix("http://").split(":")
        statuses = asyncio.run(
            _flood(host, int(port), int(concurrency), float(seconds), float(backoff))
        )
        print(json.dumps(statuses))
        return

    floods = [int(n) for n in args.floods.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="nm-fair-"))
    env = {**os.environ, "NILEMETRICS_DATA_DIR": str(tmp), "NILEMETRICS_CONFIG_DIR": str(tmp),
           "NILEMETRICS_DASHBOARD_TOKEN": "bench-token"}
    if args.server_src:
        env["PYTHONPATH"] = os.pathsep.join([args.server_src, env.get("PYTHONPATH", "")])
    results: dict[str, Any] = {}

    def run_all(name: str, url: str) -> None:
        port = free_port()
        cmd = [sys.executable, "-m", "nilemetrics", "serve", "--port", str(port),
               "--log-level", "warning"]
        with server(cmd, port, {**env, "NILEMETRICS_DATABASE_URL": url}) as base:
            for flood in floods:
                runs = []
                for _ in range(args.runs):
                    r = _measure(base, flood, args.seconds, args.warmup, args.flood_backoff)
                    runs.append(r)
                    print(f"{args.label} {name:>8} flood {flood:>3}: p50 {r['p50_ms']} ms  "
                          f"p99 {r['p99_ms']} ms  victim {r['statuses']}  "
                          f"flood {r.get('flood_statuses', {})}", flush=True)
                results.setdefault(name, {})[str(flood)] = runs

    wanted = args.only or ["sqlite", "postgres"]
    if "sqlite" in wanted:
        run_all("sqlite", f"sqlite:///{tmp / 'bench.db'}")
    if "postgres" in wanted:
        name = f"nm_fair_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.pg_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            run_all("postgres", f"{args.pg_url.rsplit('/', 1)[0]}/{name}")
        finally:
            with psycopg.connect(args.pg_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    record = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    record[args.label] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, shared (load "
                   f"{os.getloadavg()[0]:.1f} at the end)",
        "victim_seconds": args.seconds, "batch_events": BATCH,
        "flood_backoff_s": args.flood_backoff,
        "results": results,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
