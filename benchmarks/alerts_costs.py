"""What alerts and /metrics cost, piece by piece, on a database with a busy window.

End-to-end events/s on a shared 2-core machine swing by tens of percent between
identical runs (``benchmarks.alerts_overhead``), far more than the 3% to be shown.
This measures each added piece on its own, median of many repetitions:

- one evaluation tick of the five rules of ``benchmarks.alerts_overhead`` on
  SQLite with 300,000 page visits (and 3,000 payment errors) in the window,
  300,000 visits in the hour before (a shop at 1,000 visits/s for 5 minutes);
- one ``GET /metrics`` answered by a running server on that database;
- the per-batch counting hook for a batch of 100 page visits.

Their sum per second of serving (a tick every 5 s, a scrape every second, the hook
at 9,000 events/s) against one core-second says what share of the server's CPU
they take.

    python -m benchmarks.alerts_costs

Writes results/alerts_costs.json.
"""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import insert

from benchmarks.alerts_overhead import RULES
from benchmarks.ingest import HERE
from nilemetrics.config import Settings
from nilemetrics.protocol.bodies import PageVisitIn
from nilemetrics.server.alerts.engine import AlertEngine
from nilemetrics.server.alerts.rules import load_rules
from nilemetrics.server.db import make_engine, migrate
from nilemetrics.server.ingestion.events import BatchOutcome, TrackedEvent
from nilemetrics.server.ingestion.privacy import RequestContext
from nilemetrics.server.metrics_export import MetricsExporter, ingest_paths
from nilemetrics.server.tables import errors_t, visits_t

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class _Clock:
    def now(self) -> datetime:
        return NOW


def median_ms(work: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median wall time of ``work`` and mean CPU time of this process, in milliseconds.

    CPU time counts every thread of the process (for a scrape: the server's and the
    client's), so it errs on the high side; wall time includes waiting for the disk.
    """
    times = []
    cpu = time.process_time()
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), (time.process_time() - cpu) / repeat * 1000


def fill(url: str) -> None:
    """300,000 visits in the last 5 minutes, 300,000 before, 3,000 payment errors."""
    engine = make_engine(url)
    migrate(engine)
    types = ["homepage", "category", "offer", "product", "search", "checkout", "payment"]
    with engine.begin() as conn:
        for start, span in ((0, 300), (300, 3300)):
            rows = [{"session_id": f"s{i % 5000}", "page_type": random.choice(types),
                     "entered_at": NOW - timedelta(seconds=start + random.uniform(0, span)),
                     "is_active": False} for i in range(300_000)]
            for i in range(0, len(rows), 50_000):
                conn.execute(insert(visits_t), rows[i:i + 50_000])
        conn.execute(insert(errors_t), [
            {"session_id": "s1", "error_code": random.choice(["card_declined", "expired"]),
             "occurred_at": NOW - timedelta(seconds=random.uniform(0, 300))}
            for _ in range(3000)])
    engine.dispose()


def main() -> None:
    """Measure the three pieces and print their share of one core."""
    tmp = Path(tempfile.mkdtemp(prefix="nm-costs-"))
    url = f"sqlite:///{tmp / 'costs.db'}"
    fill(url)
    rules = tmp / "alerts.toml"
    rules.write_text(RULES.format(port=9))
    engine = make_engine(url)
    alerts = AlertEngine(load_rules(rules), engine, _Clock(), live_window=90, interval=5)
    alerts.tick()  # first tick: creates the state rows, may queue "shop down"
    tick_ms, tick_cpu = median_ms(alerts.tick, 30)

    exporter = MetricsExporter(Settings(dashboard_token=["t"]), ingest_paths())
    context = RequestContext(ip_address=None, user_agent=None, anonymous=False)
    batch = [TrackedEvent("page-visit", f"00000000-0000-4000-8000-{i:012d}", NOW, context,
                          PageVisitIn(sessionId=f"00000000-0000-4000-8000-{i:012d}",
                                      pageType="homepage"))
             for i in range(100)]
    outcome = BatchOutcome(applied=[True] * 100)
    hook_ms, hook_cpu = median_ms(lambda: exporter.committed(batch, outcome, 0.004), 2000)

    from tests.support import serve_app

    from nilemetrics.server.app import create_app

    settings = Settings(database_url=url, data_dir=tmp, config_dir=tmp, dashboard_token=["t"])
    with serve_app(create_app(settings)) as server, httpx.Client(
        base_url=f"http://127.0.0.1:{server.config.port}",
        headers={"Authorization": "Bearer t"}, timeout=10,
    ) as http:
        assert http.get("/metrics").status_code == 200
        scrape_ms, scrape_cpu = median_ms(lambda: http.get("/metrics").raise_for_status(), 100)
    engine.dispose()

    per_second = tick_cpu / 5 + scrape_cpu + hook_cpu / 100 * 9000
    record = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "tick_ms": round(tick_ms, 2), "tick_cpu_ms": round(tick_cpu, 2),
        "scrape_ms": round(scrape_ms, 2), "scrape_cpu_ms": round(scrape_cpu, 2),
        "hook_ms_per_100_events": round(hook_ms, 4),
        "hook_cpu_ms_per_100_events": round(hook_cpu, 4),
        "cpu_ms_per_second_at_9000_events_1s_scrape_5s_ticks": round(per_second, 2),
        "share_of_one_core": round(per_second / 1000, 4),
    }
    print(f"evaluation tick (5 rules, 300,000 visits in the window): {tick_ms:.2f} ms "
          f"({tick_cpu:.2f} ms CPU), every 5 s")
    print(f"GET /metrics: {scrape_ms:.2f} ms round trip ({scrape_cpu:.2f} ms CPU, server "
          "and client), every 1 s")
    print(f"counting hook: {hook_ms * 1000:.1f} us per batch of 100 events "
          f"({hook_cpu * 1000:.1f} us CPU)")
    print(f"together at 9,000 events/s: {per_second:.2f} ms CPU per second = "
          f"{per_second / 10:.2f}% of one core")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "alerts_costs.json").write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
