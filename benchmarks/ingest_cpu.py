"""CPU per event of each process under the ingest load: server, writer, PostgreSQL, wrk.

Runs ``nilemetrics serve`` on a throw-away database under the same wrk load as
``benchmarks/ingest.py`` (64 connections, page visits of 2,000 sessions) and reads
each process's CPU time from ``/proc`` before and after: the server process, its
writer process, the PostgreSQL backends serving the database (PostgreSQL runs) and
wrk itself. Printed as a share of one core and as microseconds per event, with
the share of the machine left idle. Unlike a profiler it slows nothing down, so
the rate is the benchmark's own.

    python -m benchmarks.ingest_cpu [--db sqlite|postgres] [--duration 10] [--runs 1]

Why this matters: when no process is near a whole core and the machine is not
busy either, throughput is bounded by the chain of waits between the processes
(one batch in flight), not by CPU. Needs wrk and Linux's ``/proc``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from benchmarks.ingest import LoadedServer, loaded_server, wrk

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def idle_seconds() -> float:
    """The machine's idle CPU time so far, all cores together."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()
    return (int(fields[4]) + int(fields[5])) / TICKS


def backends(admin_url: str, database: str) -> list[int]:
    """PIDs of the PostgreSQL backends connected to ``database``."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)
        ).fetchall()
    return [int(row[0]) for row in rows]


@dataclass
class CpuUnderLoad:
    """One measured wrk run: its result, and each process's CPU in the middle of it."""

    wrk: dict[str, float]
    #: Share of one core per process name, over ``took`` seconds.
    cores: dict[str, float]
    #: Share of the whole machine left idle.
    idle: float

    def us_per_event(self, name: str) -> float:
        """Microseconds of ``name``'s CPU per event."""
        return self.cores[name] / self.wrk["rps"] * 1e6


def cpu_under_load(live: LoadedServer, pids: dict[str, list[int]], duration: int,
                   connections: int) -> CpuUnderLoad:
    """Run wrk on ``live`` for ``duration`` s; read the CPU of ``pids`` (and of wrk) from
    1 s after it starts to 1 s before it ends."""
    result: dict[str, float] = {}
    runner = threading.Thread(target=lambda: result.update(
        wrk(live.base, duration, connections, 1, live.wrk_env)))
    runner.start()
    time.sleep(1)  # wrk up and running; measure the middle of its run
    pids = {**pids, "wrk": [int(subprocess.check_output(
        ["pgrep", "-n", "-x", "wrk"], text=True).split()[0])]}
    before = {name: sum(cpu_seconds(p) for p in ps) for name, ps in pids.items()}
    idle_before, began = idle_seconds(), time.monotonic()
    time.sleep(duration - 2)
    after = {name: sum(cpu_seconds(p) for p in ps) for name, ps in pids.items()}
    idle, took = idle_seconds() - idle_before, time.monotonic() - began
    runner.join()
    return CpuUnderLoad(
        wrk=result,
        cores={name: (after[name] - before[name]) / took for name in pids},
        idle=idle / took / (os.cpu_count() or 1),
    )


def measure(db: str, duration: int, connections: int, pg_url: str) -> None:
    """One server, one measured wrk run: print CPU per process."""
    with loaded_server(db, pg_url, connections) as live:
        pids = {"server": [live.server_pid], "writer": [live.writer_pid]}
        if db == "postgres":
            pids["postgres"] = backends(pg_url, live.url.rsplit("/", 1)[1])
        run = cpu_under_load(live, pids, duration, connections)
    result = run.wrk
    print(f"{db}: {result['rps']:.0f} events/s, p50 {result['p50_ms']:.2f} ms, "
          f"p99 {result['p99_ms']:.2f} ms; machine idle {run.idle:.0%}")
    for name, share in run.cores.items():
        print(f"  {name:>8}: {share:6.0%} of a core  {run.us_per_event(name):6.1f} us/event")


def main() -> None:
    """Measure ``--runs`` times; each run is a fresh server and database."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    for _ in range(args.runs):
        measure(args.db, args.duration, args.connections, args.pg_url)


if __name__ == "__main__":
    main()
