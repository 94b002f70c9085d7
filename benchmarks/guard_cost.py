"""What the abuse guards cost ingestion: the same load with each one switched off.

Runs ``nilemetrics serve`` (a fresh throw-away database each time) under
``benchmarks/ingest.py``'s load (wrk, 64 connections, page visits of 2,000
sessions) as shipped and with one guard switched off (``benchmarks/guards_off.py``):

- ``http``: the HTTP guard (whole-request deadline, header cap, connection cap)
  replaced by uvicorn's own httptools protocol;
- ``share``: no per-client share of the writer's queue.

The write deadlines (WRITE_TIMEOUT) and the queue's total cap are not switched
off: they are part of the writer's queue itself. Variants run in rounds
(shipped, http, share, then again), and each is reported against the shipped
run of its own round, as events/s and as the server process's CPU per event
(from ``/proc``: a guard's cost shows there first, and it is steadier than the
rate on a noisy machine).

    python -m benchmarks.guard_cost [--db sqlite|postgres] [--rounds 3] [--duration 10]

Writes results/guard_cost_DB.json. Needs wrk.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.ingest import loaded_server
from benchmarks.ingest_cpu import cpu_under_load

HERE = Path(__file__).parent
VARIANTS = {"shipped": "none", "no http guard": "http", "no client share": "share"}


def run(db: str, guards_off: str, duration: int, connections: int,
        pg_url: str) -> dict[str, float]:
    """One fresh server with ``guards_off`` switched off: rate, latency, server CPU."""
    command = [sys.executable, "-m", "benchmarks.guards_off", guards_off]
    with loaded_server(db, pg_url, connections, command) as live:
        run = cpu_under_load(live, {"server": [live.server_pid], "writer": [live.writer_pid]},
                             duration, connections)
    return {
        "rps": run.wrk["rps"], "p50_ms": run.wrk["p50_ms"], "p99_ms": run.wrk["p99_ms"],
        "non_2xx": run.wrk["non_2xx"],
        "server_us_per_event": run.us_per_event("server"),
        "writer_us_per_event": run.us_per_event("writer"),
    }


def main() -> None:
    """Run the rounds, print each variant against the shipped run of its round."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    rounds: list[dict[str, dict[str, float]]] = []
    for number in range(1, args.rounds + 1):
        this: dict[str, dict[str, float]] = {}
        for name, off in VARIANTS.items():
            this[name] = r = run(args.db, off, args.duration, args.connections, args.pg_url)
            print(f"round {number} {name:>16}: {r['rps']:6.0f} events/s  p99 "
                  f"{r['p99_ms']:5.1f} ms  server {r['server_us_per_event']:5.1f} us/event  "
                  f"non-2xx {r['non_2xx']:.0f}", flush=True)
        rounds.append(this)
    print(f"\n{args.db}: each variant against the shipped run of its round "
          f"(median of {args.rounds} rounds)\n"
          "| variant | events/s ratio | server CPU per event ratio |\n|---|---|---|")
    summary: dict[str, dict[str, float]] = {}
    for name in VARIANTS:
        rate = statistics.median(r[name]["rps"] / r["shipped"]["rps"] for r in rounds)
        cpu = statistics.median(r[name]["server_us_per_event"]
                                / r["shipped"]["server_us_per_event"] for r in rounds)
        summary[name] = {"rps_ratio": round(rate, 3), "server_cpu_ratio": round(cpu, 3)}
        print(f"| {name} | {rate:.2f}x | {cpu:.2f}x |")
    record = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "database": args.db, "connections": args.connections, "duration_s": args.duration,
        "rounds": rounds, "summary": summary,
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"guard_cost_{args.db}.json").write_text(
        json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
