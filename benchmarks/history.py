"""History, journeys and customer lookups on a large database, and what rollups cost ingestion.

Part 1 (``queries``), per database (SQLite, PostgreSQL): seed ``--sessions``
sessions over 30 days with ``--visits`` page visits each (bulk inserts: one
SQLite transaction of ``executemany``, PostgreSQL ``COPY``), checkouts, payment
errors and contacts; let the rollup job catch up on the whole period (timed);
then time, as the endpoints run them (query and JSON encoding, no HTTP):

- ``GET /history`` of the last 24 h at 1m and of the last 30 d at 1h;
- ``GET /sessions/{id}``, the journey of a random session;
- ``GET /sessions?email=``, a random customer's sessions.

Part 2 (``ingest``): page-visit events/s (wrk, 64 connections, as
benchmarks.ingest) of ``nilemetrics serve`` with the rollup job on and off, both
servers side by side on fresh databases, each under its own wrk (the same noise
for both), the job ticking every second (production: once a minute), so the
ratio is a pessimistic bound; the median ratio of the rounds is the result.

    python -m benchmarks.history [--sessions 1000000] [--visits 10] [--only sqlite]
    python -m benchmarks.history --part ingest [--duration 20] [--rounds 2]

Writes results/history.json (each part updates its own section).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine, text

from benchmarks.ingest import (
    concurrently,
    free_port,
    make_sessions,
    server,
    throwaway_database,
    wrk,
)
from nilemetrics.protocol.history import Step
from nilemetrics.server.db import make_engine, migrate
from nilemetrics.server.journeys import Person, journey, sessions_of
from nilemetrics.server.rollups import count_minutes, drop_old_minutes, fold_hours, history

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "history.json"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
SPAN = timedelta(days=30)
CUSTOMERS = 100_000
PAGES = ("homepage", "category", "product", "product", "search", "category", "offer",
         "product", "checkout", "payment")
UA = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
      "Chrome/131.0.0.0 Safari/537.36")
VISIT_SECONDS = 20
CHUNK = 50_000  # sessions generated and written per batch


def session_id(start_ms: int, n: int) -> str:
    """A version-7 UUID as the server makes them (time-ordered), unique by ``n``."""
    value = (start_ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | 0b10 << 62 | (n & 0xFFFF_FFFF)
    return str(uuid.UUID(int=value))


def rows(total: int, visits: int) -> Iterator[tuple[list[tuple[Any, ...]], ...]]:
    """Sessions, page visits, checkouts and errors, chunk by chunk (times as epoch seconds)."""
    first = (NOW - SPAN).timestamp()
    gap = SPAN.total_seconds() / total
    for low in range(0, total, CHUNK):
        sessions, page_visits, checkouts, errors = [], [], [], []
        for i in range(low, min(total, low + CHUNK)):
            started = first + i * gap
            sid = session_id(int(started * 1000), i)
            email = f"customer{(i // 5) % CUSTOMERS}@example.com" if i % 5 == 0 else None
            phone = f"+1555{(i // 5) % CUSTOMERS:07d}" if i % 5 == 0 else None
            last = started + (visits - 1) * VISIT_SECONDS
            ended = last + VISIT_SECONDS
            pages = [PAGES[k % len(PAGES)] for k in range(visits)]
            idents = [f"cat-{i % 40}" if p == "category" else f"offer-{i % 12}" if p == "offer"
                      else f"p-{i % 900}" if p == "product" else None for p in pages]
            sessions.append((sid, email and f"u{(i // 5) % CUSTOMERS}", email, phone,
                             "203.0.113.0", UA, started, last, ended, pages[-1], idents[-1]))
            for k in range(visits):
                entered = started + k * VISIT_SECONDS
                page_visits.append((sid, pages[k], idents[k], f"https://shop.test/{pages[k]}",
                                    entered, entered + VISIT_SECONDS, float(VISIT_SECONDS)))
            if i % 20 == 0:
                at = started + (visits - 2) * VISIT_SECONDS
                failed = i % 80 == 0
                paid = i % 80 != 40
                checkouts.append((i // 20 + 1, sid, email, phone, f"{10 + i % 90}.50",
                                  "completed" if paid else "failed" if failed else "abandoned",
                                  int(failed), at,
                                  at + 5, at + 8 if failed else None, at + 10 if paid else None))
                if failed:
                    errors.append((i // 20 + 1, sid, "card_declined", "Declined",
                                   f"{10 + i % 90}.50", at + 8))
        yield sessions, page_visits, checkouts, errors


def seed_sqlite(engine: Engine, total: int, visits: int) -> None:
    """One transaction of executemany per table, chunk by chunk."""

    def ts(epoch: float | None) -> str | None:
        if epoch is None:
            return None
        return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("PRAGMA cache_size=-4000000")
        cur.execute("BEGIN")
        for sessions, page_visits, checkouts, errors in rows(total, visits):
            cur.executemany(
                "INSERT INTO user_sessions (session_id, user_id, email, phone, ip_address, "
                "user_agent, is_active, started_at, last_activity, ended_at, "
                "current_page_type, current_page_identifier) "
                "VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?)",
                [(*r[:6], ts(r[6]), ts(r[7]), ts(r[8]), r[9], r[10]) for r in sessions])
            cur.executemany(
                "INSERT INTO page_visits (session_id, page_type, page_identifier, page_url, "
                "entered_at, exited_at, duration_seconds, is_active) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                [(*r[:4], ts(r[4]), ts(r[5]), r[6]) for r in page_visits])
            cur.executemany(
                "INSERT INTO checkout_sessions (id, session_id, email, phone, checkout_items, "
                "item_count, total_amount, status, error_count, started_at, "
                "payment_started_at, payment_error_at, completed_at, updated_at) "
                "VALUES (?, ?, ?, ?, '[{\"name\": \"Mug\"}]', 1, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(*r[:7], ts(r[7]), ts(r[8]), ts(r[9]), ts(r[10]), ts(r[10] or r[9] or r[8]))
                 for r in checkouts])
            cur.executemany(
                "INSERT INTO payment_errors (checkout_id, session_id, attempt, error_code, "
                "error_message, amount, occurred_at) VALUES (?, ?, 1, ?, ?, ?, ?)",
                [(*r[:5], ts(r[5])) for r in errors])
        raw.commit()
        cur.execute("ANALYZE")
    finally:
        raw.close()


def seed_postgres(url: str, total: int, visits: int) -> None:
    """COPY per table, chunk by chunk, in one transaction."""

    def ts(epoch: float | None) -> datetime | None:
        return None if epoch is None else datetime.fromtimestamp(epoch, UTC)

    with psycopg.connect(url) as conn, conn.cursor() as cur:
        for sessions, page_visits, checkouts, errors in rows(total, visits):
            with cur.copy("COPY user_sessions (session_id, user_id, email, phone, ip_address, "
                          "user_agent, is_active, started_at, last_activity, ended_at, "
                          "current_page_type, current_page_identifier) FROM STDIN") as copy:
                for r in sessions:
                    copy.write_row((*r[:6], False, ts(r[6]), ts(r[7]), ts(r[8]), r[9], r[10]))
            with cur.copy("COPY page_visits (session_id, page_type, page_identifier, page_url, "
                          "entered_at, exited_at, duration_seconds, is_active) "
                          "FROM STDIN") as copy:
                for r in page_visits:
                    copy.write_row((*r[:4], ts(r[4]), ts(r[5]), r[6], False))
            with cur.copy("COPY checkout_sessions (id, session_id, email, phone, checkout_items, "
                          "item_count, total_amount, status, error_count, started_at, "
                          "payment_started_at, payment_error_at, completed_at, updated_at) "
                          "FROM STDIN") as copy:
                for r in checkouts:
                    copy.write_row((r[0], r[1], r[2], r[3], '[{"name": "Mug"}]', 1, *r[4:7],
                                    ts(r[7]), ts(r[8]), ts(r[9]), ts(r[10]),
                                    ts(r[10] or r[9] or r[8])))
            with cur.copy("COPY payment_errors (checkout_id, session_id, attempt, error_code, "
                          "error_message, amount, occurred_at) FROM STDIN") as copy:
                for r in errors:
                    copy.write_row((r[0], r[1], 1, *r[2:5], ts(r[5])))
        cur.execute("SELECT setval(pg_get_serial_sequence('checkout_sessions', 'id'), "
                    "(SELECT max(id) FROM checkout_sessions))")
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def catch_up(engine: Engine) -> dict[str, float]:
    """Run the rollup job's counting and folding over everything seeded; timed."""
    now = NOW + timedelta(seconds=10)
    began = time.perf_counter()
    minutes = 0
    while True:
        with engine.begin() as conn:
            done = count_minutes(conn, now)
        if done is None:
            break
        minutes += int((done[1] - done[0]).total_seconds()) // 60
    with engine.begin() as conn:
        hours = fold_hours(conn)
        drop_old_minutes(conn, now)
    return {"seconds": round(time.perf_counter() - began, 1), "minutes_counted": minutes,
            "hours_folded": hours}


def timed(run: Callable[[int], Any], repeat: int) -> dict[str, float]:
    """Median, p90 and max milliseconds of ``run(i)`` (after one warm-up call)."""
    run(-1)
    times = []
    for i in range(repeat):
        began = time.perf_counter()
        run(i)
        times.append((time.perf_counter() - began) * 1000)
    times.sort()
    return {"median_ms": round(statistics.median(times), 2),
            "p90_ms": round(times[int(len(times) * 0.9) - 1], 2),
            "max_ms": round(times[-1], 2)}


def queries(engine: Engine, total: int, repeat: int) -> dict[str, Any]:
    """Time the four reads the issue sets budgets for."""
    rng = random.Random(7)
    now = NOW + timedelta(seconds=10)
    customers = min(CUSTOMERS, total // 5)
    with engine.connect() as conn:
        ids = [row[0] for row in conn.execute(text(
            "SELECT session_id FROM user_sessions WHERE id % 997 = 0"))]

    def read(query: Callable[[Any], Any]) -> Any:
        with engine.connect() as conn, conn.begin():
            return query(conn)

    def day(_: int) -> None:
        out = read(lambda c: history(c, NOW - timedelta(days=1), NOW, Step.MINUTE, now))
        assert len(out.points) == 1440 and sum(p.page_visits for p in out.points) > 0
        out.model_dump_json(by_alias=True)

    def month(_: int) -> None:
        out = read(lambda c: history(c, NOW - SPAN, NOW, Step.HOUR, now))
        assert len(out.points) == 720 and sum(p.page_visits for p in out.points) > 0
        out.model_dump_json(by_alias=True)

    def one_journey(_: int) -> None:
        sid = rng.choice(ids)
        out = read(lambda c: journey(c, sid, now, 90.0))
        assert out is not None and out.pages
        out.model_dump_json(by_alias=True)

    def by_email(_: int) -> None:
        person = Person("email", f"customer{rng.randrange(customers)}@example.com")
        out = read(lambda c: sessions_of(c, person, now, 90.0, 0, 50))
        assert out.total >= 1
        out.model_dump_json(by_alias=True)

    return {
        "history_24h_1m": timed(day, repeat),
        "history_30d_1h": timed(month, repeat),
        "journey": timed(one_journey, repeat * 5),
        "lookup_by_email": timed(by_email, repeat * 5),
    }


def write(section: str, key: str, value: Any) -> None:
    """Update one entry of results/history.json."""
    RESULTS.parent.mkdir(exist_ok=True)
    record = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    record.setdefault(section, {})[key] = value
    record["machine"] = f"{platform.machine()}, {os.cpu_count()} cores"
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")


def run_queries(args: argparse.Namespace, kinds: list[str]) -> None:
    """Part 1 on each database kind."""
    for kind in kinds:
        tmp = Path(tempfile.mkdtemp(prefix="nm-history-"))
        pg_name = f"nm_bench_{uuid.uuid4().hex[:8]}"
        base = args.pg_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        url = f"sqlite:///{tmp / 'history.db'}" if kind == "sqlite" else f"{base}/{pg_name}"
        if kind == "postgres":
            with psycopg.connect(args.pg_url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{pg_name}"')
        engine = make_engine(url)
        try:
            migrate(engine)
            began = time.perf_counter()
            if kind == "sqlite":
                seed_sqlite(engine, args.sessions, args.visits)
            else:
                seed_postgres(url.replace("+psycopg", ""), args.sessions, args.visits)
            seeded = round(time.perf_counter() - began, 1)
            print(f"{kind}: seeded {args.sessions} sessions, {args.sessions * args.visits} "
                  f"page visits in {seeded} s", flush=True)
            rolled = catch_up(engine)
            print(f"{kind}: rollup catch-up {rolled}", flush=True)
            timings = queries(engine, args.sessions, args.repeat)
            for name, t in timings.items():
                print(f"{kind}: {name:>16}: median {t['median_ms']} ms, p90 {t['p90_ms']} ms, "
                      f"max {t['max_ms']} ms", flush=True)
            write("queries", kind, {
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "sessions": args.sessions, "page_visits": args.sessions * args.visits,
                "seed_seconds": seeded, "rollup_catch_up": rolled, "timings": timings,
                "budgets_ms": {"history_24h_1m": 100, "history_30d_1h": 100, "journey": 20,
                               "lookup_by_email": 20},
            })
        finally:
            engine.dispose()
            shutil.rmtree(tmp, ignore_errors=True)
            if kind == "postgres":
                with psycopg.connect(args.pg_url, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


def run_ingest(args: argparse.Namespace, kinds: list[str]) -> None:
    """Part 2: events/s with the rollup job on and off, side by side, per database kind.

    Each round runs two servers at once on fresh databases, one with rollups and
    one without, each under its own wrk, so the same noise of a shared machine
    falls on both; rounds alternate which starts first. The median round ratio
    is the result.
    """
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    for kind in kinds:
        _ingest_side_by_side(args, kind)


def _ingest_side_by_side(args: argparse.Namespace, kind: str) -> None:
    """Rounds of rollups on vs off, both servers at once, on one database kind."""
    py = sys.executable
    tmp = Path(tempfile.mkdtemp(prefix="nm-history-ingest-"))
    env = {**os.environ, "NILEMETRICS_DATA_DIR": str(tmp), "NILEMETRICS_CONFIG_DIR": str(tmp),
           "NILEMETRICS_DASHBOARD_TOKEN": "bench-token", "NILEMETRICS_ROLLUP_INTERVAL": "1"}
    rates: dict[str, list[float]] = {"on": [], "off": []}
    ratios: list[float] = []

    @contextlib.contextmanager
    def running(label: str) -> Iterator[dict[str, str]]:
        """A server with rollups ``label`` (on/off), sessions started; yields wrk's env."""
        port = free_port()
        with throwaway_database(kind, args.pg_url, tmp) as url:
            run_env = {**env, "NILEMETRICS_DATABASE_URL": url,
                       "NILEMETRICS_ROLLUPS": "true" if label == "on" else "false"}
            with server([py, "-m", "nilemetrics", "serve", "--port", str(port),
                         "--log-level", "warning"], port, run_env) as base:
                pool = tmp / f"sessions-{port}.txt"
                make_sessions(base, pool, 2000)
                wrk_env = {**run_env, "NM_SESSIONS": str(pool), "NM_BASE": base}
                wrk(base, 3, 64, 1, wrk_env)
                yield wrk_env

    try:
        for round_ in range(args.rounds):
            first, second = ("on", "off") if round_ % 2 == 0 else ("off", "on")
            with running(first) as env_a, running(second) as env_b:
                got = dict(zip((first, second), concurrently(
                    lambda: wrk(env_a["NM_BASE"], args.duration, 64, 1, env_a),
                    lambda: wrk(env_b["NM_BASE"], args.duration, 64, 1, env_b),
                ), strict=True))
            for label in ("on", "off"):
                rates[label].append(got[label]["rps"])
                print(f"{kind} rollups {label}: {got[label]['rps']:.0f} events/s "
                      f"(p99 {got[label]['p99_ms']:.1f} ms, "
                      f"non-2xx {got[label]['non_2xx']:.0f})", flush=True)
            ratios.append(got["on"]["rps"] / got["off"]["rps"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    median = statistics.median(ratios)
    write("ingest", kind, {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "side by side", "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "duration_s": args.duration, "connections": 64, "rollup_interval_s": 1,
        "events_per_s_on": [round(r) for r in rates["on"]],
        "events_per_s_off": [round(r) for r in rates["off"]],
        "round_ratios": [round(r, 3) for r in ratios],
        "ratio_on_to_off": round(median, 3),
        "cost_percent": round((1 - median) * 100, 1),
    })
    print(f"{kind}: rollups on/off per round {[round(r, 3) for r in ratios]}, "
          f"median {median:.3f}", flush=True)


def main() -> None:
    """Run the chosen part(s) on the chosen database kinds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["queries", "ingest", "all"], default="all")
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--visits", type=int, default=10, help="page visits per session")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per history query")
    parser.add_argument("--duration", type=int, default=20, help="seconds per ingestion run")
    parser.add_argument("--rounds", type=int, default=2, help="on/off pairs per database")
    parser.add_argument("--only", action="append", choices=["sqlite", "postgres"])
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="admin URL; throw-away databases are created on that server")
    args = parser.parse_args()
    kinds = args.only or ["sqlite", "postgres"]
    if args.part in ("queries", "all"):
        run_queries(args, kinds)
    if args.part in ("ingest", "all"):
        run_ingest(args, kinds)


if __name__ == "__main__":
    main()
