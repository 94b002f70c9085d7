"""Custom events through a real server, then `report`, `export` and `forget` on them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from nilemetrics.server.db import make_engine
from nilemetrics.server.tables import events_t
from tests.cli.conftest import Invoke
from tests.support import FakeClock, LiveServer

P = "/api/metrics"
JANE = "jane@example.com"


@pytest.fixture
def clock() -> FakeClock:
    """The server's clock at the real time: the CLI's periods are relative to now."""
    return FakeClock(datetime.now(UTC))


def _send(server: LiveServer) -> tuple[str, str]:
    """Jane (logged in) and an anonymous visitor send custom events; their session ids."""
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        jane = client.post(f"{P}/session/start", json={"email": JANE}).json()["sessionId"]
        other = client.post(f"{P}/session/start", json={}).json()["sessionId"]
        events = [
            {"type": "event", "sessionId": jane, "name": "add_to_cart",
             "properties": {"sku": "tv-55", "quantity": 1}},
            {"type": "event", "sessionId": jane, "name": "add_to_cart",
             "properties": {"sku": "hdmi", "quantity": 2}},
            {"type": "event", "sessionId": other, "name": "add_to_cart",
             "properties": {"sku": "tv-55"}},
            # Someone else's event naming Jane (a gift's recipient).
            {"type": "event", "sessionId": other, "name": "gift_note",
             "properties": {"recipient": JANE, "wrap": True}},
        ]
        response = client.post(f"{P}/events", json={"events": events})
        assert response.status_code == 200, response.text
    return jane, other


def test_report_counts_custom_events_per_name(server: LiveServer, nm: Invoke) -> None:
    """report --json lists each name with its events and sessions; the table shows them."""
    _send(server)
    url = server.settings.effective_database_url()
    result = nm("report", "--since", "1h", "--json", "--database-url", url)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["customEvents"] == [
        {"name": "add_to_cart", "events": 3, "sessions": 2},
        {"name": "gift_note", "events": 1, "sessions": 1},
    ]
    table = nm("report", "--since", "1h", "--database-url", url)
    assert "Custom events" in table.stdout
    line = next(row for row in table.stdout.splitlines() if "add_to_cart" in row)
    assert [cell.strip() for cell in line.split("│")[1:4]] == ["add_to_cart", "3", "2"]


def test_export_custom_events_writes_only_named_events(
    server: LiveServer, nm: Invoke, tmp_path: Path
) -> None:
    """export --what custom-events: the four custom events, with name and properties."""
    _send(server)
    out = tmp_path / "custom.jsonl"
    result = nm("export", "--what", "custom-events", "--format", "jsonl", "-o", str(out),
                "--database-url", server.settings.effective_database_url())
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["event_type"], r["name"]) for r in records] == [
        ("event", "add_to_cart"), ("event", "add_to_cart"), ("event", "add_to_cart"),
        ("event", "gift_note"),
    ]
    assert records[1]["payload"] == {"name": "add_to_cart",
                                     "properties": {"sku": "hdmi", "quantity": 2}}


def test_forget_erases_custom_events_and_mentions_in_others(
    server: LiveServer, nm: Invoke
) -> None:
    """forget --email deletes the person's custom events and scrubs their address elsewhere."""
    jane, other = _send(server)
    url = server.settings.effective_database_url()
    result = nm("forget", "--email", JANE, "--yes", "--database-url", url)
    assert result.exit_code == 0, result.output
    engine = make_engine(url)
    with engine.connect() as conn:
        left = conn.execute(
            select(events_t.c.session_id, events_t.c.name, events_t.c.payload)
            .where(events_t.c.name.is_not(None)).order_by(events_t.c.id)
        ).all()
    engine.dispose()
    assert [(r.session_id, r.name) for r in left] == [(other, "add_to_cart"),
                                                     (other, "gift_note")]
    assert left[1].payload == {"name": "gift_note",
                               "properties": {"recipient": "[erased]", "wrap": True}}
    assert jane not in {r.session_id for r in left}
