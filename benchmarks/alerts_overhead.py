"""Ingestion with alerts and /metrics on vs off: page-visit events/s, same run, same machine.

The load of ``benchmarks.ingest`` (wrk, 64 connections, page visits over a pool of
sessions) against ``nilemetrics serve``, alternately:

- **off**: ``NILEMETRICS_METRICS_ENDPOINT=false`` (no counters, no /metrics) and no
  alert rules: the server as it was before alerts existed;
- **on**: five alert rules (every metric, page_visits included, at the default 5 s
  evaluation interval) and a scraper reading ``GET /metrics`` every second
  (Prometheus' default is 15 s or more). Measured once the server has loaded
  Apprise's plugins (a one-off second of CPU at start).

Every measurement gets a fresh, empty database (a database that grows from run
to run would favour whichever mode runs first). By default both servers run at
once, each under its own wrk, so the same seconds of other people's load fall
on both; rounds alternate which one starts first. Each round gives a ratio, and
the median round ratio is the result. ``--sequential`` runs one server at a
time instead, in pairs off-on, on-off, ... (more sensitive to drift: with a
noisy neighbour its ratios swing by tens of percent). Target: on within 3% of
off.

On a shared machine events/s swing by tens of percent between identical runs, so
the script also measures what the server itself spends: CPU seconds of the
``serve`` process and its writer process (``/proc``) per event answered. That is
far less sensitive to other people's load, and it is what alerts and /metrics
add (PostgreSQL's own CPU, shared with other users of the cluster, is not in it).

    python -m benchmarks.alerts_overhead [--duration 15] [--rounds 2] [--skip-pg] [--sequential]

Needs ``wrk``. Prints a table and writes results/alerts_overhead.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from benchmarks.ingest import HERE, concurrently, free_port, make_sessions, wrk

RULES = """
[[notify]]
name = "ops"
url = "json://127.0.0.1:{port}/hook"

[[rule]]
name = "payment errors"
metric = "payment_errors"
window = "5m"
above = 5
notify = ["ops"]

[[rule]]
name = "success rate"
metric = "payment_success_rate"
window = "15m"
below = 0.8
notify = ["ops"]

[[rule]]
name = "nobody live"
metric = "live_sessions"
below = 1
for = "5m"
notify = ["ops"]

[[rule]]
name = "shop down"
metric = "page_visits"
window = "5m"
below = 1
notify = ["ops"]

[[rule]]
name = "declines"
metric = "error_code:card_declined"
window = "5m"
above = 10
notify = ["ops"]
"""


@contextlib.contextmanager
def server(cmd: list[str], port: int, env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """Run ``nilemetrics serve`` until the block ends; yield its base URL and pid."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not start") from None
                time.sleep(0.2)
        yield base, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (the writer process), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def warmed_up(base: str, token: str) -> None:
    """Wait until the server has loaded Apprise's plugins (about a second of CPU, once).

    That is a start-up cost, not a cost of serving: it must not land in a measurement.
    On the fresh database "shop down" fires at once; its first delivery attempt (to a
    closed port) comes after the plugins are loaded, in the same thread.
    """
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pending = httpx.get(f"{base}/api/metrics/alerts",
                            headers={"Authorization": f"Bearer {token}"}).json()["pending"]
        if any(item["attempts"] >= 1 for item in pending):
            return
        time.sleep(0.2)
    raise RuntimeError("the alert engine did not try its first notification in 60 s")


@contextlib.contextmanager
def scraping(base: str, token: str, every: float) -> Iterator[list[int]]:
    """GET /metrics every ``every`` seconds in a thread for the block; yields the statuses."""
    statuses: list[int] = []
    stop = threading.Event()

    def run() -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=10) as http:
            while not stop.wait(every):
                statuses.append(http.get(f"{base}/metrics").status_code)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield statuses
    finally:
        stop.set()
        thread.join(15)


def main() -> None:
    """Alternate off/on runs per database; report the means and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per measurement")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4, help="off/on pairs per database")
    parser.add_argument("--scrape-every", type=float, default=1.0)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--sequential", action="store_true",
                        help="one server at a time (default: off and on side by side)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")

    tmp = Path(tempfile.mkdtemp(prefix="nm-bench-alerts-"))
    rules = tmp / "alerts.toml"
    rules.write_text(RULES.format(port=free_port()))
    token = "bench-token"
    env = {**os.environ, "NILEMETRICS_DATA_DIR": str(tmp), "NILEMETRICS_CONFIG_DIR": str(tmp),
           "NILEMETRICS_DASHBOARD_TOKEN": token}
    py = sys.executable
    results: dict[str, dict[str, list[dict[str, float]]]] = {}

    @contextlib.contextmanager
    def running(db: str, url: str, mode: str) -> Iterator[tuple[str, int, dict[str, str]]]:
        """A warmed-up server in ``mode`` on ``url``: its base URL, pid and wrk's env."""
        port = free_port()
        extra = {"NILEMETRICS_DATABASE_URL": url}
        cmd = [py, "-m", "nilemetrics", "serve", "--port", str(port), "--log-level", "warning"]
        if mode == "on":
            cmd += ["--alerts", str(rules)]
        else:
            extra["NILEMETRICS_METRICS_ENDPOINT"] = "false"
        with server(cmd, port, {**env, **extra}) as (base, pid):
            if mode == "on":
                warmed_up(base, token)
            pool = tmp / f"{db}-{mode}-{port}-sessions.txt"
            make_sessions(base, pool, args.sessions)
            wrk_env = {**env, "NM_SESSIONS": str(pool)}
            wrk(base, args.warmup, args.connections, 1, wrk_env)
            yield base, pid, wrk_env

    def load(base: str, pid: int, wrk_env: dict[str, str], mode: str) -> dict[str, Any]:
        """One measurement of a running server (with the scraper when alerts are on)."""
        scrape = scraping(base, token, args.scrape_every) if mode == "on" else None
        with scrape or contextlib.nullcontext([]) as statuses:
            cpu_before = cpu_seconds(pid)
            result: dict[str, Any] = wrk(base, args.duration, args.connections, 1, wrk_env)
            cpu = cpu_seconds(pid) - cpu_before
        result["cpu_us_per_event"] = cpu / (result["rps"] * args.duration) * 1e6
        if mode == "on":
            assert statuses and set(statuses) == {200}, statuses
            result["scrapes"] = float(len(statuses))
            state = httpx.get(f"{base}/api/metrics/alerts",
                              headers={"Authorization": f"Bearer {token}"}).json()
            assert [r["state"] for r in state["rules"]].count("unknown") == 0, state
        return result

    def save(db: str, mode: str, result: dict[str, Any]) -> None:
        results.setdefault(db, {}).setdefault(mode, []).append(result)
        print(f"{db:>8} {mode:>3}: {result['rps']:8.0f} req/s  p50 {result['p50_ms']:.2f} ms  "
              f"p99 {result['p99_ms']:.2f} ms  non-2xx {result['non_2xx']:.0f}  "
              f"server CPU {result['cpu_us_per_event']:.1f} us/event", flush=True)

    def measure(db: str, url: str, mode: str) -> None:
        with running(db, url, mode) as (base, pid, wrk_env):
            save(db, mode, load(base, pid, wrk_env, mode))

    def side_by_side(db: str, first: str) -> None:
        """Both servers at once, each under its own wrk: the same minute of noise for both."""
        with fresh(db) as url_a, fresh(db) as url_b, \
                running(db, url_a, first) as a, \
                running(db, url_b, "on" if first == "off" else "off") as b:
            second = "on" if first == "off" else "off"
            out = dict(zip((first, second), concurrently(
                lambda: load(*a, first), lambda: load(*b, second)), strict=True))
            for mode in ("off", "on"):
                save(db, mode, out[mode])

    @contextlib.contextmanager
    def fresh(db: str) -> Iterator[str]:
        name = f"nm_bench_{uuid.uuid4().hex[:8]}"
        if db == "sqlite":
            yield f"sqlite:///{tmp / name}.db"
            return
        with psycopg.connect(args.pg_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{args.pg_url.rsplit('/', 1)[0]}/{name}"
        finally:
            with psycopg.connect(args.pg_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    for db in ("sqlite", *(() if args.skip_pg else ("postgres",))):
        for pair in range(args.rounds):
            order = ("off", "on") if pair % 2 == 0 else ("on", "off")
            if args.sequential:
                for mode in order:
                    with fresh(db) as url:
                        measure(db, url, mode)
            else:
                side_by_side(db, order[0])

    print("\n| database | off events/s (mean) | on events/s (mean) | on / off, per pair "
          "| median | server CPU per event, off / on (median) | CPU on / off |"
          "\n|---|---|---|---|---|---|---|")
    summary: dict[str, dict[str, Any]] = {}
    for db, modes in results.items():
        off = statistics.mean(r["rps"] for r in modes["off"])
        on = statistics.mean(r["rps"] for r in modes["on"])
        pairs = [b["rps"] / a["rps"] for a, b in zip(modes["off"], modes["on"], strict=True)]
        median = statistics.median(pairs)
        cpu_off = statistics.median(r["cpu_us_per_event"] for r in modes["off"])
        cpu_on = statistics.median(r["cpu_us_per_event"] for r in modes["on"])
        summary[db] = {"off_rps": round(off), "on_rps": round(on),
                       "pair_ratios": [round(p, 3) for p in pairs],
                       "median_ratio": round(median, 3),
                       "cpu_us_per_event_off": round(cpu_off, 1),
                       "cpu_us_per_event_on": round(cpu_on, 1),
                       "cpu_ratio": round(cpu_on / cpu_off, 3)}
        print(f"| {db} | {off:.0f} | {on:.0f} | {', '.join(f'{p:.1%}' for p in pairs)} "
              f"| {median:.1%} | {cpu_off:.1f} / {cpu_on:.1f} us | {cpu_on / cpu_off:.1%} |")
    record = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "connections": args.connections, "duration_s": args.duration, "rounds": args.rounds,
        "scrape_every_s": args.scrape_every, "evaluation_interval_s": 5.0,
        "mode": "sequential" if args.sequential else "side by side",
        "results": results, "summary": summary,
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "alerts_overhead.json").write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
