"""Ingestion with custom events in the mix against page visits alone, side by side.

One run on this machine: the bare endpoint (page visits, no storage) alone as the
reference, then per database (SQLite, PostgreSQL) rounds of two ``nilemetrics
serve`` at once on fresh databases, each under its own wrk (64 connections, the
same kind of session pool): one gets page visits only, the other the same with
custom events (``track/event``, 30% of the requests by default) mixed in. Both
feel the same noise of a shared machine; rounds alternate which starts first and
the median round ratio is the result.

``--event-ids`` gives every request an ``eventId``, as the browser tracker sends
them: page visits are then written to the event log too, as custom events always
are (without ids the comparison also counts the log row page visits skip).

    python -m benchmarks.custom_events [--duration 15] [--share 0.3] [--rounds 2]
        [--event-ids] [--skip-pg] [--output custom_events.json]

Writes results/custom_events.json (or --output).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.ingest import (
    concurrently,
    free_port,
    make_sessions,
    server,
    throwaway_database,
    wrk,
)

HERE = Path(__file__).parent
LUA = HERE / "custom_events.lua"


def main() -> None:
    """Bare alone, then per database rounds of without/with events side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--share", type=float, default=0.3,
                        help="share of requests that are custom events in the mixed runs")
    parser.add_argument("--rounds", type=int, default=2, help="side-by-side rounds per database")
    parser.add_argument("--event-ids", action="store_true",
                        help="every request carries an eventId, as the tracker's do")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--output", default="custom_events.json",
                        help="file name under results/")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    tmp = Path(tempfile.mkdtemp(prefix="nm-bench-events-"))
    env = {**os.environ, "NILEMETRICS_DATA_DIR": str(tmp), "NILEMETRICS_CONFIG_DIR": str(tmp),
           "NILEMETRICS_DASHBOARD_TOKEN": "bench-token",
           "NM_EVENT_IDS": "1" if args.event_ids else "0"}
    py = sys.executable
    runs: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def running(name: str, cmd: list[str], port: int, extra: dict[str, str],
                share: float) -> Iterator[tuple[str, dict[str, str]]]:
        """A warmed-up server; yields its base URL and the env of its wrk."""
        with server(cmd, port, {**env, **extra}) as base:
            pool = tmp / f"{uuid.uuid4().hex}.txt"
            make_sessions(base, pool, args.sessions)
            wrk_env = {**env, "NM_SESSIONS": str(pool), "NM_EVENT_SHARE": str(share)}
            wrk(base, args.warmup, args.connections, 1, wrk_env, LUA)
            yield base, wrk_env

    def record(name: str, share: float, result: dict[str, Any]) -> dict[str, Any]:
        row = {"server": name, "event_share": share, **result}
        runs.append(row)
        print(f"{name:>9} events {share:4.0%}: {row['rps']:8.0f} req/s  p50 "
              f"{row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms  non-2xx "
              f"{row['non_2xx']:.0f}", flush=True)
        return row

    port = free_port()
    bare_cmd = [py, "-m", "uvicorn", "benchmarks.bare_server:app", "--port", str(port),
                "--log-level", "warning", "--no-access-log"]
    with running("bare", bare_cmd, port, {}, 0.0) as (base, wrk_env):
        bare = record("bare", 0.0, wrk(base, args.duration, args.connections, 1, wrk_env, LUA))

    @contextlib.contextmanager
    def nm(name: str, share: float) -> Iterator[tuple[str, dict[str, str]]]:
        port = free_port()
        cmd = [py, "-m", "nilemetrics", "serve", "--port", str(port), "--log-level", "warning"]
        with throwaway_database(name, args.pg_url, tmp) as url, \
                running(name, cmd, port, {"NILEMETRICS_DATABASE_URL": url}, share) as ready:
            yield ready

    summary: dict[str, Any] = {}
    for name in ("sqlite", *(() if args.skip_pg else ("postgres",))):
        ratios: list[float] = []
        for round_ in range(args.rounds):
            first, second = (0.0, args.share) if round_ % 2 == 0 else (args.share, 0.0)
            with nm(name, first) as a, nm(name, second) as b:
                got = concurrently(
                    lambda: wrk(a[0], args.duration, args.connections, 1, a[1], LUA),
                    lambda: wrk(b[0], args.duration, args.connections, 1, b[1], LUA),
                )
            by_share = {first: record(name, first, got[0]), second: record(name, second, got[1])}
            ratios.append(by_share[args.share]["rps"] / by_share[0.0]["rps"])
        without = [r["rps"] for r in runs if r["server"] == name and r["event_share"] == 0]
        with_events = [r["rps"] for r in runs if r["server"] == name and r["event_share"] > 0]
        summary[name] = {
            "without_events_rps": round(statistics.mean(without)),
            "with_events_rps": round(statistics.mean(with_events)),
            "round_ratios": [round(r, 3) for r in ratios],
            "with_vs_without": round(statistics.median(ratios), 3),
        }
        print(f"{name}: with / without per round {summary[name]['round_ratios']}, median "
              f"{summary[name]['with_vs_without']:.3f}", flush=True)
    print("\n| database | page visits only (req/s, side by side) | with custom events | "
          "with / without (median of rounds) |\n|---|---|---|---|")
    for name, s in summary.items():
        print(f"| {name} | {s['without_events_rps']} | {s['with_events_rps']} | "
              f"{s['with_vs_without']:.3f} ({', '.join(f'{r:.3f}' for r in s['round_ratios'])}) |")
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_after": os.getloadavg(),
        "mode": "side by side", "event_ids": args.event_ids,
        "connections": args.connections, "duration_s": args.duration,
        "event_share": args.share, "bare_rps_alone": bare["rps"],
        "runs": runs, "summary": summary,
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / args.output).write_text(json.dumps(result, indent=2) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
