"""Operations commands at scale on SQLite: forget, export memory, report time.

Builds one SQLite database with 1,000,000 page visits (100,000 sessions of ten
visits, a matching event log of 1,100,000 entries, 30,000 checkouts, 9,000
payment errors), all within the last 24 hours, then measures:

* ``forget``: one person (3 sessions) erased; the erasure transaction in process
  and the whole ``nilemetrics forget --yes`` command (interpreter start included);
* ``export``: peak RSS of ``nilemetrics export`` writing 1,000,000 page visits as
  CSV and as JSON Lines (a subprocess each, peak from ``getrusage``);
* ``report --since 24h``: the analyses in process and the whole command.

    python -m benchmarks.ops [--visits 1000000] [--keep DIR]

Prints a table and writes results/ops.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
TARGET_EMAIL = "bench.person@example.com"
PAGES = ("homepage", "category", "product", "offer", "search", "checkout", "payment")
CATEGORIES = ("electronics", "fashion", "home-garden", "books", "toys", "sports")


def _ts(at: datetime) -> str:
    # How SQLAlchemy's SQLite DateTime stores naive UTC values.
    return at.strftime("%Y-%m-%d %H:%M:%S.%f")


def build(path: Path, visits: int) -> dict[str, int]:
    """Create the schema (migrations) and bulk-load the history with sqlite3 directly."""
    from nilemetrics.server.db import make_engine, migrate

    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    rng = random.Random(42)
    now = datetime.now(UTC).replace(tzinfo=None)
    per_session = 10
    n_sessions = visits // per_session
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    sessions, visit_rows, events, checkouts, errors = [], [], [], [], []
    target_sessions = set(rng.sample(range(n_sessions), 3))
    checkout_id = 0
    for n in range(n_sessions):
        sid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        start = now - timedelta(seconds=rng.uniform(600, 23 * 3600))
        email = TARGET_EMAIL if n in target_sessions else (
            f"user{n}@example.com" if n % 3 == 0 else None
        )
        at = start
        page = ("homepage", None)
        for _ in range(per_session):
            page_type = rng.choice(PAGES)
            ident = rng.choice(CATEGORIES) if page_type == "category" else (
                "black-friday" if page_type == "offer" else None
            )
            stay = rng.uniform(2, 120)
            visit_rows.append((sid, page_type, ident, f"https://shop.example/{page_type}",
                               _ts(at), _ts(at + timedelta(seconds=stay)), stay, 0))
            events.append((uuid.uuid4().hex, "page-visit", sid, _ts(at),
                           json.dumps({"pageType": page_type, "pageIdentifier": ident})))
            at += timedelta(seconds=stay)
            page = (page_type, ident)
        events.append((uuid.uuid4().hex, "session-start", sid, _ts(start),
                       json.dumps({"email": email} if email else {})))
        sessions.append((sid, None, email, None, "203.0.113.0", "bench", 0, _ts(start),
                         _ts(at), _ts(at), page[0], page[1]))
        if n % 10 < 3 or n in target_sessions:
            checkout_id += 1
            failed = rng.random() < 0.3
            paid = not failed or rng.random() < 0.5
            amount = f"{rng.uniform(5, 300):.2f}"
            items = json.dumps([{"id": "p1", "name": "Thing", "price": float(amount),
                                 "quantity": 1}])
            checkouts.append((sid, None, email, None, items, amount, "card",
                              "completed" if paid else "failed", 1 if failed else 0,
                              _ts(at), _ts(at), _ts(at) if failed else None,
                              _ts(at) if paid else None, _ts(at)))
            if failed:
                code = rng.choice(("card_declined", "insufficient_funds", "expired_card"))
                errors.append((checkout_id, sid, 1, code, "declined",
                               json.dumps({"errorCode": code}), amount, "card",
                               "https://shop.example/payment", "203.0.113.0", "bench",
                               _ts(at)))
    with conn:
        conn.executemany(
            "INSERT INTO user_sessions (session_id, user_id, email, phone, ip_address, "
            "user_agent, is_active, started_at, last_activity, ended_at, current_page_type, "
            "current_page_identifier) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", sessions)
        conn.executemany(
            "INSERT INTO page_visits (session_id, page_type, page_identifier, page_url, "
            "entered_at, exited_at, duration_seconds, is_active) VALUES (?,?,?,?,?,?,?,?)",
            visit_rows)
        conn.executemany(
            "INSERT INTO events (event_id, event_type, session_id, occurred_at, payload) "
            "VALUES (?,?,?,?,?)", events)
        conn.executemany(
            "INSERT INTO checkout_sessions (session_id, user_id, email, phone, checkout_items, "
            "total_amount, payment_method, status, error_count, started_at, "
            "payment_started_at, payment_error_at, completed_at, updated_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", checkouts)
        conn.executemany(
            "INSERT INTO payment_errors (checkout_id, session_id, attempt, error_code, "
            "error_message, error_details, amount, payment_method, page_url, ip_address, "
            "user_agent, occurred_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", errors)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("ANALYZE")
    conn.close()
    return {"sessions": len(sessions), "page_visits": len(visit_rows), "events": len(events),
            "checkouts": len(checkouts), "payment_errors": len(errors)}


# Runs the CLI and records the process's own peak RSS (VmHWM) at exit. getrusage()
# of a child is no good here: Linux carries the parent's high-water mark into it.
PROBE = """
import atexit, sys
out = sys.argv.pop(1)
def hwm():
    with open('/proc/self/status') as status:
        kb = [line.split()[1] for line in status if line.startswith('VmHWM')][0]
    with open(out, 'w') as handle:
        handle.write(kb)
atexit.register(hwm)
sys.argv[0] = 'nilemetrics'
from nilemetrics.cli.main import main
main()
"""


def cli_rss(args: list[str], env: dict[str, str], workdir: Path) -> tuple[float, float]:
    """Run `nilemetrics ARGS` in a fresh interpreter; return wall seconds and peak RSS (MB)."""
    probe = workdir / "hwm.txt"
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", PROBE, str(probe), *args], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"{args[0]} failed: {proc.stderr[-500:]}")
    return wall, int(probe.read_text()) / 1024


def main() -> None:
    """Build the database, run the measurements, print and save them."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--visits", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="build in this directory and keep it")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="nm-bench-ops-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "ops.db"
    url = f"sqlite:///{db}"
    env = {**os.environ, "NILEMETRICS_DATA_DIR": str(workdir),
           "NILEMETRICS_CONFIG_DIR": str(workdir / "config"), "COLUMNS": "120"}
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
                   f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        if not db.exists():
            began = time.perf_counter()
            results["rows"] = build(db, args.visits)
            results["build_seconds"] = round(time.perf_counter() - began, 1)
            print(f"built {results['rows']} in {results['build_seconds']} s", flush=True)
        results["db_mb"] = round(db.stat().st_size / 2**20, 1)

        # report --since 24h: the analyses in process, then the whole command.
        from nilemetrics.server.db import make_engine
        from nilemetrics.server.reports import build_report

        engine = make_engine(url)
        now = datetime.now(UTC)
        timings = []
        for _ in range(3):
            began = time.perf_counter()
            with engine.connect() as conn, conn.begin():
                build_report(conn, now - timedelta(hours=24), now)
            timings.append(time.perf_counter() - began)
        results["report_query_seconds"] = round(min(timings), 3)
        wall, _rss = cli_rss(["report", "--since", "24h", "--json", "--database-url", url],
                             env, workdir)
        results["report_command_seconds"] = round(wall, 3)

        # export: peak memory of a whole process writing 1,000,000 rows.
        for fmt in ("csv", "jsonl"):
            target = workdir / f"visits.{fmt}"
            wall, rss = cli_rss(["export", "--what", "page-visits", "--format", fmt, "-o",
                                 str(target), "--database-url", url], env, workdir)
            lines = sum(1 for _ in target.open(encoding="utf-8"))
            results[f"export_{fmt}"] = {"seconds": round(wall, 1), "peak_rss_mb": round(rss, 1),
                                        "lines": lines}
            target.unlink()
        wall, rss = cli_rss(["--version"], env, workdir)
        results["interpreter_baseline_rss_mb"] = round(rss, 1)

        # forget: the erasure transaction in process (a rolled-back run, then the real
        # command on the same person).
        from nilemetrics.server.db import write_options
        from nilemetrics.server.erasure import Subject, erase_subject

        subject = Subject(email=TARGET_EMAIL)
        timings = []
        for _ in range(3):
            with engine.connect() as conn:
                write_options(conn)
                began = time.perf_counter()
                with conn.begin() as tx:
                    erased = erase_subject(conn, subject, key=b"k" * 32, now=now, via="bench")
                    tx.rollback()
                timings.append(time.perf_counter() - began)
        results["forget_transaction_seconds"] = round(min(timings), 3)
        results["forget_rows"] = {"deleted": erased.deleted, "sessions": erased.sessions}
        engine.dispose()
        wall, _rss = cli_rss(["forget", "--email", TARGET_EMAIL, "--yes", "--database-url",
                              url], env, workdir)
        results["forget_command_seconds"] = round(wall, 3)
        wall, _rss = cli_rss(["--version"], env, workdir)
        results["cli_startup_seconds"] = round(wall, 3)
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(results, indent=2))
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "ops.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
