"""Durable ingestion vs. two baselines: page-visit events/s at 64 connections.

Runs, in one go on this machine, four servers one after another (each a single
uvicorn worker, access log off): a raw ASGI app (``benchmarks/raw_asgi.py``: the
same body parsing and validation, no framework, no storage: the ceiling), the
bare FastAPI endpoint (same body model, no storage), nilemetrics on SQLite and
nilemetrics on PostgreSQL. Every server is reported against both. Load comes from
``wrk`` (compiled; a Python client would be the bottleneck) with a Lua script
that moves a pool of sessions between pages.

    python -m benchmarks.ingest [--duration 15] [--connections 64] [--pg-url URL]
    python -m benchmarks.ingest --only postgres   # the baselines and PostgreSQL only

Needs ``wrk`` (Debian package). Prints a table and writes results/ingest.json.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import httpx
import psycopg

T = TypeVar("T")
HERE = Path(__file__).parent
LUA = HERE / "page_visit.lua"


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server(cmd: list[str], port: int, env: dict[str, str]) -> Iterator[str]:
    """Run a server command until the block ends; yield its base URL."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                httpx.get(f"{base}/openapi.json", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not start") from None
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def throwaway_database(kind: str, pg_url: str, directory: Path) -> Iterator[str]:
    """A fresh, empty database URL: a new SQLite file in ``directory``, or a new
    PostgreSQL database on ``pg_url``'s server, dropped when the block ends."""
    if kind == "sqlite":
        yield f"sqlite:///{directory / f'bench-{uuid.uuid4().hex[:8]}.db'}"
        return
    name = f"nm_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{pg_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclasses.dataclass(frozen=True)
class LoadedServer:
    """``nilemetrics serve`` ready for the measured run (see :func:`loaded_server`)."""

    base: str
    url: str
    wrk_env: dict[str, str]
    server_pid: int
    writer_pid: int


@contextlib.contextmanager
def loaded_server(db: str, pg_url: str, connections: int,
                  command: list[str] | None = None) -> Iterator[LoadedServer]:
    """``nilemetrics serve`` on a throw-away ``db`` database, its 2,000 sessions started
    and 3 s of wrk as warm-up: what the profiling and CPU benchmarks measure.

    ``command``: what runs the ``nilemetrics`` CLI (default ``python -m nilemetrics``).
    """
    tmp = Path(tempfile.mkdtemp(prefix="nm-load-"))
    env = {**os.environ, "NILEMETRICS_DATA_DIR": str(tmp), "NILEMETRICS_CONFIG_DIR": str(tmp),
           "NILEMETRICS_DASHBOARD_TOKEN": "bench-token"}
    port = free_port()
    try:
        with throwaway_database(db, pg_url, tmp) as url:
            cmd = [*(command or [sys.executable, "-m", "nilemetrics"]),
                   "serve", "--port", str(port), "--log-level", "warning"]
            with server(cmd, port, {**env, "NILEMETRICS_DATABASE_URL": url}) as base:
                pool = tmp / "sessions.txt"
                make_sessions(base, pool, 2000)
                wrk_env = {**env, "NM_SESSIONS": str(pool)}
                wrk(base, 3, connections, 1, wrk_env)
                server_pid = int(subprocess.check_output(
                    ["pgrep", "-f", f" serve --port {port} "], text=True).split()[0])
                writer_pid = int(subprocess.check_output(
                    ["pgrep", "-P", str(server_pid), "-f", "writer_process"], text=True).split()[0])
                yield LoadedServer(base, url, wrk_env, server_pid, writer_pid)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def make_sessions(base: str, path: Path, count: int) -> None:
    """Start ``count`` sessions like the shop's client; write their ids to ``path``."""
    if "/api/metrics/session/start" not in httpx.get(f"{base}/openapi.json").text:
        # The bare server has no session/start: any well-formed ids will do.
        ids = [str(uuid.uuid4()) for _ in range(count)]
    else:
        with httpx.Client(base_url=base) as http:
            ids = [
                http.post("/api/metrics/session/start",
                          headers={"Content-Type": "application/json"}).json()["sessionId"]
                for _ in range(count)
            ]
    path.write_text("\n".join(ids) + "\n")


def wrk(base: str, duration: int, connections: int, threads: int,
        env: dict[str, str], script: Path = LUA) -> dict[str, float]:
    """Run wrk (``script``) against the page-visit endpoint; parse rate and percentiles."""
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
         "-s", str(script), f"{base}/api/metrics/track/page-visit"],
        capture_output=True, text=True, check=True, env=env,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        assert match, out
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "rps": rate,
        "p50_ms": pct("50"),
        "p99_ms": pct("99"),
        "non_2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "socket_errors": errors.group(0) if errors else "",  # type: ignore[dict-item]
    }


def concurrently(*calls: Callable[[], T]) -> list[T]:
    """Run ``calls`` at once, each in a thread; their results in order.

    Two servers measured side by side, each under its own wrk, share the same
    seconds of a shared machine's noise, which one after the other they do not.
    """
    results: list[T | None] = [None] * len(calls)

    def run(index: int) -> None:
        results[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if any(result is None for result in results):
        raise RuntimeError("a side-by-side measurement failed (see above)")
    return results  # type: ignore[return-value]


def main() -> None:
    """Run the measurements and report ratios to both baselines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per server")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--sessions", type=int, default=2000,
                        help="sessions started before the run and moved between pages")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="admin URL; a throw-away database is created on that server")
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--only", action="append",
                        choices=["raw", "bare", "sqlite", "postgres"],
                        help="run only these servers (repeatable; the baselines raw and bare "
                             "always run); results/ingest.json is then left as it is")
    parser.add_argument("--record", type=Path,
                        help="also write the results (JSON) here, with --only too")
    parser.add_argument("--label", default="",
                        help="what was measured (recorded with the results, e.g. a commit)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")

    tmp = Path(tempfile.mkdtemp(prefix="nm-bench-"))
    env = {**os.environ, "NILEMETRICS_DATA_DIR": str(tmp), "NILEMETRICS_CONFIG_DIR": str(tmp),
           "NILEMETRICS_DASHBOARD_TOKEN": "bench-token"}
    py = sys.executable
    uvicorn_flags = ["--log-level", "warning", "--no-access-log"]
    results: dict[str, dict[str, float]] = {}

    def measure(name: str, cmd: list[str], port: int, extra_env: dict[str, str]) -> None:
        with server(cmd, port, {**env, **extra_env}) as base:
            pool = tmp / f"{name}-sessions.txt"
            make_sessions(base, pool, args.sessions)
            wrk_env = {**env, "NM_SESSIONS": str(pool)}
            wrk(base, args.warmup, args.connections, args.threads, wrk_env)
            results[name] = wrk(base, args.duration, args.connections, args.threads, wrk_env)
            print(f"{name:>10}: {results[name]['rps']:8.0f} req/s  "
                  f"p50 {results[name]['p50_ms']:.2f} ms  p99 {results[name]['p99_ms']:.2f} ms  "
                  f"non-2xx {results[name]['non_2xx']:.0f}", flush=True)

    port = free_port()
    measure("raw", [py, "-m", "uvicorn", "benchmarks.raw_asgi:app", "--port", str(port),
                    *uvicorn_flags], port, {})
    port = free_port()
    measure("bare", [py, "-m", "uvicorn", "benchmarks.bare_server:app", "--port", str(port),
                     *uvicorn_flags], port, {})
    wanted = set(args.only or ["raw", "bare", "sqlite", "postgres"]) | {"raw", "bare"}
    if args.skip_pg:
        wanted.discard("postgres")
    port = free_port()
    if "sqlite" in wanted:
        measure("sqlite", [py, "-m", "nilemetrics", "serve", "--port", str(port),
                           "--log-level", "warning"], port,
                {"NILEMETRICS_DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}"})
    if "postgres" in wanted:
        name = f"nm_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.pg_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            base_url = args.pg_url.rsplit("/", 1)[0]
            port = free_port()
            measure("postgres", [py, "-m", "nilemetrics", "serve", "--port", str(port),
                                 "--log-level", "warning"], port,
                    {"NILEMETRICS_DATABASE_URL": f"{base_url}/{name}"})
        finally:
            with psycopg.connect(args.pg_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    raw, bare = results["raw"]["rps"], results["bare"]["rps"]
    print("\n| server | events/s | vs raw ASGI | vs bare FastAPI | p50 ms | p99 ms |\n"
          "|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['rps']:.0f} | {r['rps'] / raw:.0%} | {r['rps'] / bare:.0%} | "
              f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")
    record = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        # Others' load on a shared machine: the ratios of one run still compare.
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "connections": args.connections, "duration_s": args.duration,
        "results": results,
        "ratios": {k: round(v["rps"] / bare, 3) for k, v in results.items()},
        "ratios_to_raw": {k: round(v["rps"] / raw, 3) for k, v in results.items()},
    }
    if args.label:
        record["label"] = args.label
    if args.record is not None:
        args.record.write_text(json.dumps(record, indent=2) + "\n")
    if args.only:
        print(json.dumps({"vs bare": record["ratios"], "vs raw": record["ratios_to_raw"]}))
    else:
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / "ingest.json").write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
