"""The writer's own speed: batches of page visits applied directly, no HTTP, no server.

Calls ``apply_in_transaction`` (what the writer process runs for every batch) on a
throw-away database holding 2,000 started sessions, with batches of page visits of
random sessions, and reports per batch size the median time per batch, the events
per second that gives, and where a batch's time goes: loading its sessions, the
writes that need no answer, the COMMIT, and the rest (connecting, BEGIN, planning
in Python, the WAL check). On an idle machine this
is the ceiling of durable ingestion for one writer, whatever the HTTP side does.

    python -m benchmarks.writer_alone [--db sqlite|postgres] [--sizes 8 32 64] [--batches 200]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.ingest import throwaway_database
from nilemetrics.config import normalise_database_url
from nilemetrics.protocol.bodies import PageVisitIn, SessionStartIn
from nilemetrics.protocol.names import EventType
from nilemetrics.server.db import make_engine, migrate
from nilemetrics.server.ingestion import statements as st
from nilemetrics.server.ingestion.commit import CommitGate, WalKeeper, apply_in_transaction
from nilemetrics.server.ingestion.events import TrackedEvent, tracked_event
from nilemetrics.server.ingestion.privacy import RequestContext
from nilemetrics.server.ingestion.writer_process import WRITER_PG_OPTIONS

PAGES = ["homepage", "product", "search", "checkout"]
CONTEXT = RequestContext("203.0.113.0", "writer-alone benchmark", False)


def timed(phases: dict[str, float], name: str, call: Callable[..., Any]) -> Callable[..., Any]:
    """``call``, adding the seconds each call takes to ``phases[name]``."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            phases[name] += time.perf_counter() - began

    return wrapper


def visits(sessions: list[str], n: int) -> list[TrackedEvent]:
    """``n`` page visits of distinct random sessions, stamped now."""
    return [
        tracked_event(EventType.PAGE_VISIT, sid, PageVisitIn.model_validate(
            {"sessionId": sid, "pageType": random.choice(PAGES),
             "pageUrl": "https://shop.example/page"}), CONTEXT, datetime.now(UTC))
        for sid in random.sample(sessions, n)
    ]


def main() -> None:
    """Apply ``--batches`` batches per size; print medians and the phases' shares."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 32, 64])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    phases = {"load": 0.0, "writes": 0.0, "commit": 0.0}
    st.Statements.load_sessions = timed(  # type: ignore[method-assign]
        phases, "load", st.Statements.load_sessions)
    # Queued and sent together on PostgreSQL, each run at once on SQLite.
    for method in ("bulk", "each", "execute", "send"):
        setattr(st.Writes, method, timed(phases, "writes", getattr(st.Writes, method)))
    with tempfile.TemporaryDirectory() as tmp, \
            throwaway_database(args.db, args.pg_url, Path(tmp)) as url:
        options = WRITER_PG_OPTIONS if args.db == "postgres" else None
        engine = make_engine(normalise_database_url(url), pg_options=options)
        migrate(engine)
        engine.dialect.do_commit = timed(  # type: ignore[method-assign]
            phases, "commit", engine.dialect.do_commit)
        gate, wal, notify = CommitGate(), WalKeeper(engine), args.db == "postgres"
        seq = 0

        def apply(events: list[TrackedEvent]) -> float:
            nonlocal seq
            seq += 1
            gate.open(seq)
            began = time.perf_counter()
            apply_in_transaction(engine, events, notify, gate, seq, wal)
            return time.perf_counter() - began

        sessions = [str(uuid.uuid4()) for _ in range(2000)]
        for start in range(0, len(sessions), 100):
            apply([tracked_event(EventType.SESSION_START, sid, SessionStartIn(sessionId=sid),
                                 CONTEXT, datetime.now(UTC))
                   for sid in sessions[start:start + 100]])
        print(f"{args.db}: writer alone, {len(sessions)} sessions")
        for n in args.sizes:
            for _ in range(20):  # warm-up: caches, prepared statements
                apply(visits(sessions, n))
            phases.update(load=0.0, writes=0.0, commit=0.0)
            took = [apply(visits(sessions, n)) for _ in range(args.batches)]
            total = sum(took)
            median = statistics.median(took)
            rest = total - sum(phases.values())
            shares = ", ".join(f"{name} {seconds / total:4.0%}" for name, seconds in
                               [*phases.items(), ("the rest", rest)])
            print(f"  {n:4d} events/batch: median {median * 1000:6.2f} ms, "
                  f"{median / n * 1e6:5.0f} us/event, {n / median:7.0f} events/s; {shares}")
        engine.dispose()


if __name__ == "__main__":
    main()
