"""Page-visit events/s of ``serve --workers 1`` against ``--workers 2`` on PostgreSQL.

The same load as ``benchmarks.ingest`` (``wrk``, 64 connections, the Lua script
``page_visit.lua`` moving 2,000 sessions between pages), against
``nilemetrics serve --workers N`` on a fresh PostgreSQL database per
measurement. The measurements alternate, 1, 2, 2, 1 (``--rounds 2``), so slow
drift of this shared machine hits both alike; each one is reported, and the
ratio of the means. During each run the established connections per worker
are counted from ``/proc`` (how evenly the kernel spread them).

    python -m benchmarks.workers [--duration 15] [--rounds 2] [--pg-url URL]

Needs ``wrk`` (Debian package). Prints a table and writes results/workers.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg

from benchmarks.ingest import free_port, make_sessions, wrk

HERE = Path(__file__).parent


@contextlib.contextmanager
def serve(workers: int, port: int, env: dict[str, str]) -> Iterator[tuple[str, list[int]]]:
    """``nilemetrics serve --workers N`` until the block ends; its URL and worker pids."""
    # Log level warning, as in benchmarks.ingest: no access lines are built.
    proc = subprocess.Popen(
        [sys.executable, "-m", "nilemetrics", "serve", "--port", str(port),
         "--workers", str(workers), "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited: {proc.stderr.read()[-2000:]}")  # type: ignore[union-attr]
            try:
                httpx.get(f"{base}/healthz", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("serve did not start") from None
                time.sleep(0.2)
        # A new connection waits in its worker's backlog until that worker is up: once
        # 32 of them (spread by the kernel) were answered, every worker is.
        for _ in range(32 if workers > 1 else 0):
            httpx.get(f"{base}/healthz", timeout=60).raise_for_status()
        yield base, children(proc.pid) if workers > 1 else [proc.pid]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def children(pid: int) -> list[int]:
    """The pids of ``pid``'s child processes (the workers of a supervisor)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return sorted(found)


def connections_per_worker(port: int, pids: list[int]) -> list[int]:
    """Established connections to ``port`` each process holds (from /proc)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as handle:
            for row in list(handle)[1:]:
                fields = row.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == "01":  # ESTABLISHED
                    inodes.add(fields[9])
    counts = []
    for pid in pids:
        held = 0
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        held += 1
        counts.append(held)
    return counts


def main() -> None:
    """Alternate --workers 1 and 2 runs on fresh databases; report and record them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per server")
    parser.add_argument("--rounds", type=int, default=2,
                        help="pairs of runs, in the order 1, 2, 2, 1, 1, 2, ...")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="admin URL; a throw-away database per run is made on that server")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")

    tmp = Path(tempfile.mkdtemp(prefix="nm-bench-workers-"))
    env = {**os.environ, "NILEMETRICS_DATA_DIR": str(tmp), "NILEMETRICS_CONFIG_DIR": str(tmp),
           "NILEMETRICS_DASHBOARD_TOKEN": "bench-token"}
    order = [n for r in range(args.rounds) for n in ((1, 2) if r % 2 == 0 else (2, 1))]
    runs: list[dict[str, object]] = []
    load_before = os.getloadavg()
    for workers in order:
        name = f"nm_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.pg_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            port = free_port()
            run_env = {**env, "NILEMETRICS_DATABASE_URL": f"{args.pg_url.rsplit('/', 1)[0]}/{name}"}
            with serve(workers, port, run_env) as (base, pids):
                pool = tmp / f"sessions-{name}.txt"
                make_sessions(base, pool, args.sessions)
                wrk_env = {**env, "NM_SESSIONS": str(pool)}
                wrk(base, args.warmup, args.connections, args.threads, wrk_env)
                split: list[int] = []
                timer = threading.Timer(
                    min(3.0, args.duration / 2),
                    lambda: split.extend(connections_per_worker(port, pids)))  # noqa: B023
                timer.start()
                result = wrk(base, args.duration, args.connections, args.threads, wrk_env)
                timer.join()
        finally:
            with psycopg.connect(args.pg_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        runs.append({"workers": workers, **result, "connections_per_worker": split})
        print(f"workers {workers}: {result['rps']:8.0f} events/s  p50 {result['p50_ms']:.2f} ms  "
              f"p99 {result['p99_ms']:.2f} ms  non-2xx {result['non_2xx']:.0f}  "
              f"connections per worker {split}", flush=True)

    def mean(workers: int) -> float:
        rates = [float(r["rps"]) for r in runs if r["workers"] == workers]  # type: ignore[arg-type]
        return sum(rates) / len(rates)

    one, two = mean(1), mean(2)
    print(f"\nmean events/s: --workers 1 {one:.0f}, --workers 2 {two:.0f} "
          f"({two / one:.2f}x)")
    record = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "database": "PostgreSQL on the same machine",
        "connections": args.connections, "duration_s": args.duration, "order": order,
        "runs": runs,
        "mean_rps": {"1": round(one, 1), "2": round(two, 1)},
        "ratio_2_to_1": round(two / one, 3),
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "workers.json").write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
