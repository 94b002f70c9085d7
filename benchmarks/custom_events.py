"""Ingestion with custom events in the mix against page visits alone, as a ratio to bare.

One run on this machine: the bare endpoint (page visits, no storage) as the reference,
then nilemetrics on SQLite and on PostgreSQL, each measured alternately without and
with custom events (``track/event``, 30% of the requests by default), a fresh database
per measurement. wrk, 64 connections, the same session pool for both mixes.

    python -m benchmarks.custom_events [--duration 15] [--share 0.3] [--rounds 2] [--skip-pg]
        [--output custom_events.json]

Writes results/custom_events.json (or --output).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from statistics import mean
from typing import Any

import psycopg

from benchmarks.ingest import free_port, make_sessions, server

HERE = Path(__file__).parent
LUA = HERE / "custom_events.lua"


def wrk(base: str, duration: int, connections: int, env: dict[str, str]) -> dict[str, Any]:
    """wrk with the mixed script; requests/s, latency percentiles, non-2xx."""
    import re

    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(LUA),
         f"{base}/api/metrics/track/page-visit"],
        capture_output=True, text=True, check=True, env=env,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        assert match, out
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"rps": rate, "p50_ms": pct("50"), "p99_ms": pct("99"),
            "non_2xx": int(non2xx.group(1)) if non2xx else 0}


def main() -> None:
    """Bare, then per database: without, with, with, without … events; ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--share", type=float, default=0.3,
                        help="share of requests that are custom events in the mixed runs")
    parser.add_argument("--rounds", type=int, default=2,
                        help="pairs of runs per database (order alternates)")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--output", default="custom_events.json",
                        help="file name under results/")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    tmp = Path(tempfile.mkdtemp(prefix="nm-bench-events-"))
    env = {**os.environ, "NILEMETRICS_DATA_DIR": str(tmp), "NILEMETRICS_CONFIG_DIR": str(tmp),
           "NILEMETRICS_DASHBOARD_TOKEN": "bench-token"}
    py = sys.executable
    runs: list[dict[str, Any]] = []

    def measure(name: str, cmd: list[str], port: int, extra: dict[str, str],
                share: float) -> dict[str, Any]:
        with server(cmd, port, {**env, **extra}) as base:
            pool = tmp / f"{uuid.uuid4().hex}.txt"
            make_sessions(base, pool, args.sessions)
            wrk_env = {**env, "NM_SESSIONS": str(pool), "NM_EVENT_SHARE": str(share)}
            wrk(base, args.warmup, args.connections, wrk_env)
            result = {"server": name, "event_share": share,
                      **wrk(base, args.duration, args.connections, wrk_env)}
        runs.append(result)
        print(f"{name:>9} events {share:4.0%}: {result['rps']:8.0f} req/s  p50 "
              f"{result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms  non-2xx "
              f"{result['non_2xx']}", flush=True)
        return result

    port = free_port()
    bare = measure("bare", [py, "-m", "uvicorn", "benchmarks.bare_server:app", "--port",
                            str(port), "--log-level", "warning", "--no-access-log"], port, {}, 0)

    def nm(name: str, url_for_run: Any) -> None:
        for round_ in range(args.rounds):
            order = (0.0, args.share) if round_ % 2 == 0 else (args.share, 0.0)
            for share in order:
                port = free_port()
                with url_for_run() as url:
                    measure(name, [py, "-m", "nilemetrics", "serve", "--port", str(port),
                                   "--log-level", "warning"], port,
                            {"NILEMETRICS_DATABASE_URL": url}, share)

    import contextlib

    @contextlib.contextmanager
    def sqlite_url() -> Any:
        path = tmp / f"{uuid.uuid4().hex}.db"
        yield f"sqlite:///{path}"

    @contextlib.contextmanager
    def pg_url() -> Any:
        name = f"nm_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.pg_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{args.pg_url.rsplit('/', 1)[0]}/{name}"
        finally:
            with psycopg.connect(args.pg_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    nm("sqlite", sqlite_url)
    if not args.skip_pg:
        nm("postgres", pg_url)

    summary: dict[str, Any] = {}
    for name in ("sqlite", "postgres"):
        without = [r["rps"] for r in runs if r["server"] == name and r["event_share"] == 0]
        with_events = [r["rps"] for r in runs if r["server"] == name and r["event_share"] > 0]
        if not without:
            continue
        summary[name] = {
            "without_events_rps": round(mean(without)),
            "with_events_rps": round(mean(with_events)),
            "without_vs_bare": round(mean(without) / bare["rps"], 3),
            "with_vs_bare": round(mean(with_events) / bare["rps"], 3),
            "with_vs_without": round(mean(with_events) / mean(without), 3),
        }
    print("\n| database | page visits only | with custom events | with / without |")
    print("|---|---|---|---|")
    for name, s in summary.items():
        print(f"| {name} | {s['without_events_rps']} ({s['without_vs_bare']:.0%} of bare) | "
              f"{s['with_events_rps']} ({s['with_vs_bare']:.0%} of bare) | "
              f"{s['with_vs_without']:.2f}x |")
    record = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_after": os.getloadavg(),
        "connections": args.connections, "duration_s": args.duration,
        "event_share": args.share, "runs": runs, "summary": summary,
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / args.output).write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
