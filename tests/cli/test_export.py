"""`nilemetrics export`: streamed tables as CSV / JSON Lines, and one person's data."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from sqlalchemy import func, select

from nilemetrics.server.db import make_engine
from nilemetrics.server.tables import events_t
from tests.cli.conftest import Invoke
from tests.cli.seed import ALICE, ALICE_PHONE, BOB, CAROL, DAVE, seed


def test_export_page_visits_csv_to_file(database_url: str, nm: Invoke, tmp_path: Path) -> None:
    """All 19 page visits go to the file as CSV with a header; durations and times intact."""
    seeded = seed(database_url)
    target = tmp_path / "visits.csv"
    result = nm("export", "--what", "page-visits", "--format", "csv", "-o", str(target),
                "--database-url", database_url)
    assert result.exit_code == 0, result.output
    assert "wrote 19 page-visits rows" in result.stderr
    rows = list(csv.DictReader(target.open(encoding="utf-8")))
    assert len(rows) == 19
    assert list(rows[0]) == ["id", "session_id", "page_type", "page_identifier", "page_url",
                             "entered_at", "exited_at", "duration_seconds", "is_active"]
    first = rows[0]
    assert first["session_id"] == seeded.sessions["S1"]
    assert first["page_type"] == "homepage" and first["duration_seconds"] == "10.0"
    assert first["is_active"] == "false" and first["entered_at"].endswith("Z")
    open_visits = [r for r in rows if r["is_active"] == "true"]
    assert [(r["page_type"], r["duration_seconds"]) for r in open_visits] == [("product", "")]


def test_export_checkouts_jsonl_since(database_url: str, nm: Invoke) -> None:
    """--since 24h leaves out the 100-day-old checkout; JSON columns and amounts stay exact."""
    seed(database_url)
    result = nm("export", "--what", "checkouts", "--format", "jsonl", "--since", "24h",
                "--database-url", database_url)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["total_amount"] for r in records] == ["100.00", "50.00", "20.00"]
    assert records[0]["checkout_items"] == [
        {"id": "p1", "name": "Shoes", "price": 100.0, "quantity": 1}
    ]
    assert records[0]["status"] == "completed" and records[1]["error_count"] == 2
    assert DAVE not in result.stdout


def test_export_until_and_iso_times(database_url: str, nm: Invoke) -> None:
    """--until 7d keeps only old rows; an ISO --since works too."""
    seed(database_url)
    old = nm("export", "--what", "payment-errors", "--format", "jsonl", "--until", "7d",
             "--database-url", database_url)
    assert [json.loads(x)["error_code"] for x in old.stdout.splitlines()] == ["expired_card"]
    iso = nm("export", "--what", "sessions", "--format", "jsonl", "--since",
             "2000-01-01T00:00:00", "--database-url", database_url)
    assert len(iso.stdout.splitlines()) == 6


def test_export_events_count_matches_table(database_url: str, nm: Invoke) -> None:
    """Every event-log row is exported once, in id order."""
    seed(database_url)
    engine = make_engine(database_url)
    with engine.connect() as conn:
        expected = conn.execute(select(func.count()).select_from(events_t)).scalar_one()
    engine.dispose()
    result = nm("export", "--what", "events", "--format", "csv", "--database-url", database_url)
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == expected
    assert [int(r["id"]) for r in rows] == sorted(int(r["id"]) for r in rows)
    assert json.loads(rows[0]["payload"]) == {
        "email": ALICE, "phone": ALICE_PHONE, "userId": "u-alice"
    }


def test_export_person_document(database_url: str, nm: Invoke, tmp_path: Path) -> None:
    """--email writes one JSON document with all of the person's rows and mentions elsewhere."""
    seeded = seed(database_url)
    target = tmp_path / "alice.json"
    result = nm("export", "--email", "Alice@Example.COM", "-o", str(target),
                "--database-url", database_url)
    assert result.exit_code == 0, result.output
    doc = json.loads(target.read_text(encoding="utf-8"))
    assert doc["subject"] == {"email": ALICE}
    assert {s["session_id"] for s in doc["user_sessions"]} == {
        seeded.sessions["S1"], seeded.sessions["S4"]
    }
    assert len(doc["page_visits"]) == 7
    assert [c["total_amount"] for c in doc["checkout_sessions"]] == ["100.00"]
    assert [e["error_code"] for e in doc["payment_errors"]] == ["card_declined"]
    assert len(doc["events"]) == 9
    assert sorted(m["table"] for m in doc["mentions_elsewhere"]) == [
        "checkout_sessions", "events"
    ]
    assert BOB not in target.read_text() and CAROL in target.read_text()


def test_export_person_to_stdout(database_url: str, nm: Invoke) -> None:
    """Without -o the access document goes to stdout; an unknown person gets empty lists."""
    seed(database_url)
    result = nm("export", "--email", "nobody@example.com", "--database-url", database_url)
    doc = json.loads(result.stdout)
    assert doc["user_sessions"] == [] and doc["events"] == []


def test_export_to_unwritable_path(database_url: str, nm: Invoke, tmp_path: Path) -> None:
    """A file that cannot be written is one error line."""
    seed(database_url)
    result = nm("export", "-o", str(tmp_path / "missing" / "x.csv"),
                "--database-url", database_url)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot write")


def test_export_until_before_since_is_an_error(nm: Invoke, tmp_path: Path) -> None:
    """An export period that ends before it starts is refused before any file is written."""
    target = tmp_path / "out.csv"
    result = nm("export", "--since", "2026-01-02", "--until", "2026-01-01", "-o", str(target))
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "error: --until (2026-01-01T00:00:00Z) is not after --since (2026-01-02T00:00:00Z)"
    )
    assert not target.exists()
