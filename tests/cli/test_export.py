"""`nilemetrics export`: streamed tables as CSV / JSON Lines, and one person's data."""

from __future__ import annotations

import csv
import io
import json
import os
import resource
import stat
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text

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


def _lone_surrogates(database_url: str) -> None:
    """Put a lone surrogate (as a JSON escape, the way a browser may send it) into JSON columns."""
    engine = make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE events SET payload = :p"), {"p": '{"note": "\\ud800z"}'})
        conn.execute(text("UPDATE checkout_sessions SET checkout_items = :i"),
                     {"i": '[{"name": "\\ud800z"}]'})
    engine.dispose()


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_lone_surrogates_written_as_replacement(
    nm: Invoke, tmp_path: Path, fmt: str
) -> None:
    """Stored JSON with a lone surrogate (an older server's) is exported, to a file and
    to stdout, with U+FFFD in its place: every export is valid UTF-8."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    seed(url)
    _lone_surrogates(url)
    target = tmp_path / f"events.{fmt}"
    result = nm("export", "--what", "events", "--format", fmt, "-o", str(target),
                "--database-url", url)
    assert result.exit_code == 0, result.output
    written = target.read_text(encoding="utf-8")
    assert written.count("\ufffdz") == written.count("\n") - (fmt == "csv")
    if fmt == "jsonl":
        assert json.loads(written.splitlines()[0])["payload"] == {"note": "\ufffdz"}
    piped = nm("export", "--what", "events", "--format", fmt, "--database-url", url)
    assert piped.exit_code == 0, piped.output
    assert piped.stdout == written


def test_export_person_with_lone_surrogate(nm: Invoke, tmp_path: Path) -> None:
    """The right-of-access document survives a lone surrogate in the person's basket."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    seed(url)
    _lone_surrogates(url)
    target = tmp_path / "alice.json"
    result = nm("export", "--email", ALICE, "-o", str(target), "--database-url", url)
    assert result.exit_code == 0, result.output
    doc = json.loads(target.read_text(encoding="utf-8"))
    assert doc["checkout_sessions"][0]["checkout_items"] == [{"name": "\ufffdz"}]


def test_export_csv_defuses_formulas(nm: Invoke, tmp_path: Path) -> None:
    """Customer text that a spreadsheet would run (=, +, -, @) gets a leading quote."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    seed(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE user_sessions SET user_agent = :ua"),
                     {"ua": '=HYPERLINK("http://evil.example","x")'})
    engine.dispose()
    result = nm("export", "--what", "sessions", "--format", "csv", "--database-url", url)
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {r["user_agent"] for r in rows} == {"'=HYPERLINK(\"http://evil.example\",\"x\")"}
    assert {r["phone"] for r in rows if r["email"] == ALICE} == {"'" + ALICE_PHONE}
    assert all(not r["started_at"].startswith("'") for r in rows)


@pytest.mark.parametrize("args", [["--what", "sessions"], ["--email", ALICE]])
def test_export_files_are_private(nm: Invoke, tmp_path: Path, args: list[str]) -> None:
    """Export files hold emails and IPs: created 0600, whatever the umask."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    seed(url)
    target = tmp_path / "out"
    old = os.umask(0o022)
    try:
        result = nm("export", *args, "-o", str(target), "--database-url", url)
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def _limited(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_to_a_full_disk_leaves_nothing(tmp_path: Path, fmt: str) -> None:
    """A write that fails midway (file size limit, like a full disk): one line, no partial file."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    seed(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(events_t), [
            {"event_id": f"e-{i}", "event_type": "custom", "session_id": None,
             "occurred_at": datetime.now(UTC), "payload": {"pad": "x" * 200}}
            for i in range(3000)
        ])
    engine.dispose()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / f"events.{fmt}"
    target.write_text("the previous export\n")
    result = subprocess.run(
        [sys.executable, "-m", "nilemetrics", "export", "--what", "events", "--format", fmt,
         "-o", str(target), "--database-url", url],
        capture_output=True, text=True, timeout=60, preexec_fn=_limited(64 * 1024),
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: cannot write {target}: File too large; no file was written"
    )
    assert [p.name for p in out_dir.iterdir()] == [target.name]
    assert target.read_text() == "the previous export\n"


@pytest.mark.parametrize(
    "args",
    [["export", "--what", "sessions"], ["export", "--email", ALICE], ["report"],
     ["report", "--json"]],
)
def test_output_to_dev_full_is_one_line(tmp_path: Path, args: list[str]) -> None:
    """Standard output that cannot be written (> /dev/full): one error line, exit 1."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    seed(url)
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "nilemetrics", *args, "--database-url", url],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=60,
            env={**os.environ, "COLUMNS": "200"},
        )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: cannot write standard output: No space left on device"
    )


def test_export_file_to_dev_full_is_one_line(tmp_path: Path) -> None:
    """-o /dev/full (a device, written in place): one line naming it, exit 1."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    seed(url)
    result = subprocess.run(
        [sys.executable, "-m", "nilemetrics", "export", "--what", "events", "-o", "/dev/full",
         "--database-url", url],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "error: cannot write /dev/full: No space left on device"
