"""`report --heatmap` and `report --clicks PAGE`: data sent to a real server, grids by the CLI."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from rich.console import Console
from rich.text import Text

from nilemetrics.cli.report import HEAT_SCALE, render_heatmap
from tests.cli.conftest import Invoke
from tests.support import FakeClock, LiveServer

P = "/api/metrics"
#: A Wednesday, 14:30 UTC: well inside a week's report.
WEDNESDAY = datetime(2026, 11, 25, 14, 30, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    """The server's clock on a known Wednesday afternoon (the reports give --since/--until)."""
    return FakeClock(WEDNESDAY)


def _post(server: LiveServer, events: list[dict[str, Any]]) -> None:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        response = client.post(f"{P}/events", json={"events": events})
        assert response.status_code == 200, response.text


def _period(database_url: str) -> list[str]:
    return ["--since", "2026-11-23T00:00:00Z", "--until", "2026-11-30T00:00:00Z",
            "--database-url", database_url]


def test_heatmap_places_sessions_conversions_and_errors(
    server: LiveServer, nm: Invoke
) -> None:
    """Three sessions on Wednesday 14:xx UTC, one paid, one error at 16:xx; in UTC and Berlin."""
    sids = [str(uuid.uuid4()) for _ in range(3)]
    _post(server, [{"type": "session-start", "sessionId": sid} for sid in sids] + [
        {"type": "checkout-start", "sessionId": sids[0], "checkoutItems": [], "totalAmount": 5},
        {"type": "payment-success", "sessionId": sids[0]},
    ])
    server.clock.advance(2 * 3600)
    _post(server, [
        {"type": "checkout-start", "sessionId": sids[1], "checkoutItems": [], "totalAmount": 5},
        {"type": "payment-error", "sessionId": sids[1], "errorCode": "card_declined"},
    ])
    url = server.settings.effective_database_url()
    result = nm("report", "--heatmap", "--json", *_period(url))
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["timezone"] == "UTC" and body["weekdays"][2] == "Wed"
    assert body["totals"] == {"sessions": 3, "conversions": 1, "errors": 1}
    sessions, conversions, errors = (body["grids"][k] for k in
                                     ("sessions", "conversions", "errors"))
    assert sessions[2][14] == 3 and conversions[2][14] == 1 and errors[2][16] == 1
    berlin = json.loads(nm("report", "--heatmap", "--json", "--tz", "Europe/Berlin",
                           *_period(url)).stdout)
    assert berlin["grids"]["sessions"][2][15] == 3  # UTC+1 in November
    assert berlin["grids"]["errors"][2][17] == 1

    text = nm("report", "--heatmap", "--of", "errors", *_period(url)).stdout
    assert "Errors by weekday and hour (UTC), 1 in all" in text
    wednesday = next(line for line in text.splitlines() if line.lstrip().startswith("Wed"))
    cells = wednesday.split()[1:]
    assert len(cells) == 24 and cells[16] == "1" and set(cells) - {"1"} == {"·"}


def test_heatmap_colours_the_busiest_cell_most(server: LiveServer, nm: Invoke) -> None:
    """Rich colours: the busiest hour gets the hottest background, an empty one the coolest."""
    _post(server, [{"type": "session-start", "sessionId": str(uuid.uuid4())}
                   for _ in range(4)])
    server.clock.advance(3600)
    _post(server, [{"type": "session-start", "sessionId": str(uuid.uuid4())}])
    result = nm("report", "--heatmap", "--json",
                *_period(server.settings.effective_database_url()))
    table = render_heatmap(json.loads(result.stdout), "sessions")
    hours = table.columns[1:]
    wednesday = [column._cells[2] for column in hours]
    assert isinstance(wednesday[14], Text) and wednesday[14].plain.strip() == "4"
    assert wednesday[14].style == HEAT_SCALE[-1]
    assert wednesday[15].plain.strip() == "1" and wednesday[15].style not in (
        HEAT_SCALE[0], HEAT_SCALE[-1])
    assert wednesday[3].plain.strip() == "·" and wednesday[3].style == HEAT_SCALE[0]
    console = Console(record=True, width=120, color_system="truecolor", force_terminal=True)
    console.print(table)
    assert "\x1b[" in console.export_text(styles=True)


def test_bad_time_zone_is_one_error_line(server: LiveServer, nm: Invoke) -> None:
    """--tz that is not a zone name: exit 1 and one line naming it."""
    result = nm("report", "--heatmap", "--tz", "Mars/Olympus",
                *_period(server.settings.effective_database_url()))
    assert result.exit_code == 1
    assert "--tz 'Mars/Olympus': not a time zone name" in result.stderr


def _click(sid: str, path: str, x: int, y: int, page: str = "/checkout",
           page_type: str = "checkout") -> dict[str, Any]:
    return {"type": "event", "sessionId": sid, "name": "click", "properties": {
        "path": path, "x": x, "y": y, "page": page, "pageType": page_type}}


def test_clicks_lists_top_elements_and_the_density_grid(
    server: LiveServer, nm: Invoke
) -> None:
    """Clicks on /checkout by element, most first, and per grid cell; other pages left out."""
    sid = str(uuid.uuid4())
    _post(server, [
        _click(sid, "main>button#pay", 7, 8), _click(sid, "main>button#pay", 7, 8),
        _click(sid, "main>button#pay", 7, 9), _click(sid, "nav>a.logo", 0, 0),
        _click(sid, "nav>a.logo", 0, 0, page="/", page_type="homepage"),
    ])
    url = server.settings.effective_database_url()
    body = json.loads(nm("report", "--clicks", "/checkout", "--json", *_period(url)).stdout)
    assert body["clicks"] == 4
    assert body["elements"] == [
        {"path": "main>button#pay", "clicks": 3, "share": 0.75},
        {"path": "nav>a.logo", "clicks": 1, "share": 0.25},
    ]
    grid = body["grid"]
    assert (grid[8][7], grid[9][7], grid[0][0]) == (2, 1, 1)
    assert sum(map(sum, grid)) == 4
    by_type = json.loads(nm("report", "--clicks", "homepage", "--json", *_period(url)).stdout)
    assert by_type["clicks"] == 1 and by_type["elements"][0]["path"] == "nav>a.logo"

    text = nm("report", "--clicks", "/checkout", *_period(url)).stdout
    assert "Clicks on /checkout: 4 in all" in text
    line = next(row for row in text.splitlines() if "main>button#pay" in row)
    assert [cell.strip() for cell in line.split("│")[1:4]] == ["main>button#pay", "3", "75.0%"]
    row_80 = next(row for row in text.splitlines() if row.lstrip().startswith("80%"))
    assert row_80.split()[1:] == ["·"] * 7 + ["2", "·", "·"]
