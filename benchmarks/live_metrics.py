"""Live counts must not slow down as history grows.

Measures ``live-metrics`` (the snapshot query behind GET /live-metrics and every
metrics-update frame) with 500 live sessions, first on an empty history, then
after adding 1,000,000 historical page visits, 200,000 ended sessions and
100,000 old checkouts with payment errors. Target: within 1.5x.

    python -m benchmarks.live_metrics [--visits 1000000] [--skip-pg]

Runs on SQLite and, unless --skip-pg, on a throw-away PostgreSQL database.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from sqlalchemy import Engine, text

from nilemetrics.server.db import make_engine, migrate, write_options
from nilemetrics.server.ingestion.statements import SessionInsert, Statements, VisitInsert
from nilemetrics.server.live import snapshot

HERE = Path(__file__).parent
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
PAGES = [("homepage", None), ("category", "electronics"), ("category", "garden"),
         ("offer", "bf"), ("product", "p1"), ("checkout", None), ("payment", None)]


def timed_snapshot(engine: Engine, runs: int) -> float:
    """Median milliseconds of one snapshot (live counts + last-hour figures)."""
    samples = []
    with engine.connect() as conn:
        for _ in range(runs):
            began = time.perf_counter()
            with conn.begin():
                body = snapshot(conn, NOW, 90.0)
            samples.append((time.perf_counter() - began) * 1000)
    assert body.live_sessions == 500, body.live_sessions
    return statistics.median(samples)


def insert(engine: Engine, sql: str, rows: list[tuple[object, ...]]) -> None:
    """Bulk insert through the driver, in chunks (multi-row templates or executemany)."""
    hot = Statements(engine.dialect.name)
    with engine.connect() as conn:
        write_options(conn)
        for start in range(0, len(rows), 50_000):
            with conn.begin():
                chunk = rows[start:start + 50_000]
                if "{rows}" in sql:
                    hot.bulk(conn, sql, chunk)
                else:
                    conn.exec_driver_sql(sql, chunk)


def live_sessions(engine: Engine, hot: Statements) -> None:
    """500 live sessions on various pages, active in the last minute."""
    rows = []
    for i in range(500):
        page, ident = PAGES[i % len(PAGES)]
        at = NOW - timedelta(seconds=random.randint(0, 60))
        rows.append(SessionInsert(
            session_id=str(uuid.uuid4()), user_id=None, email=None, phone=None, ip_address=None,
            user_agent=None, is_active=hot.boolean(True), started_at=hot.ts(at),
            last_activity=hot.ts(at), ended_at=None, current_page_type=page,
            current_page_identifier=ident))
    insert(engine, hot.insert_sessions, rows)


def history(engine: Engine, hot: Statements, visits: int) -> None:
    """Old ended sessions, their page visits and failed or paid checkouts."""
    p = "%s" if hot.pg else "?"
    sessions = [str(uuid.uuid4()) for _ in range(200_000)]
    rows = []
    for i, sid in enumerate(sessions):
        at = NOW - timedelta(days=1 + i % 60, seconds=i)
        page, ident = PAGES[i % len(PAGES)]
        rows.append(SessionInsert(
            session_id=sid, user_id=None, email=None, phone=None, ip_address=None,
            user_agent=None, is_active=hot.boolean(False), started_at=hot.ts(at),
            last_activity=hot.ts(at), ended_at=hot.ts(at), current_page_type=page,
            current_page_identifier=ident))
    insert(engine, hot.insert_sessions, rows)
    rows = []
    for i in range(visits):
        at = NOW - timedelta(days=1 + i % 60, seconds=i % 86400)
        page, ident = PAGES[i % len(PAGES)]
        rows.append(VisitInsert(
            session_id=sessions[i % len(sessions)], page_type=page, page_identifier=ident,
            page_url="https://shop.test/x", entered_at=hot.ts(at),
            exited_at=hot.ts(at + timedelta(seconds=30)), duration_seconds=30.0,
            is_active=hot.boolean(False)))
    insert(engine, hot.insert_visits, rows)
    checkout_sql = (
        "INSERT INTO checkout_sessions (session_id, checkout_items, total_amount, status, "
        "error_count, started_at, payment_error_at, completed_at, updated_at) VALUES "
        f"({', '.join([p] * 9)})"
    )
    rows = []
    for i in range(100_000):
        at = NOW - timedelta(days=1 + i % 60, seconds=i)
        failed = i % 3 == 0
        rows.append((sessions[i], hot.json([{"name": "x"}]), "10.00",
                     "failed" if failed else "completed", 1 if failed else 0, hot.ts(at),
                     hot.ts(at) if failed else None, None if failed else hot.ts(at), hot.ts(at)))
    insert(engine, checkout_sql, rows)
    error_sql = (
        "INSERT INTO payment_errors (session_id, attempt, error_code, occurred_at) VALUES "
        f"({', '.join([p] * 4)})"
    )
    insert(engine, error_sql, [(sessions[i], 1, "card_declined", hot.ts(NOW - timedelta(
        days=1 + i % 60))) for i in range(0, 100_000, 3)])
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()


def measure(name: str, url: str, visits: int, runs: int) -> dict[str, float]:
    """Empty history vs. large history on one database."""
    engine = make_engine(url)
    migrate(engine)
    hot = Statements(engine.dialect.name)
    live_sessions(engine, hot)
    empty = timed_snapshot(engine, runs)
    began = time.perf_counter()
    history(engine, hot, visits)
    loaded = time.perf_counter() - began
    full = timed_snapshot(engine, runs)
    engine.dispose()
    print(f"{name:>9}: empty history {empty:.2f} ms, with {visits:,} visits {full:.2f} ms "
          f"-> {full / empty:.2f}x  (history loaded in {loaded:.0f} s)", flush=True)
    return {"empty_ms": round(empty, 3), "large_ms": round(full, 3),
            "ratio": round(full / empty, 3), "visits": visits}


def main() -> None:
    """Run on SQLite and PostgreSQL; write results/live_metrics.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visits", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--skip-pg", action="store_true")
    args = parser.parse_args()
    random.seed(7)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = measure("sqlite", f"sqlite:///{tmp}/live.db", args.visits, args.runs)
    if not args.skip_pg:
        name = f"nm_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.pg_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            base = args.pg_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
            results["postgres"] = measure("postgres", f"{base}/{name}", args.visits, args.runs)
        finally:
            with psycopg.connect(args.pg_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "live_metrics.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
