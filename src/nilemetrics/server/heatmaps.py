"""When and where: ``report --heatmap`` (hour of day x weekday) and ``report --clicks PAGE``.

Both read only the period's rows through time indexes (sessions by start, checkouts
by payment, payment errors by time, clicks through the custom events' name index)
and count them here, in the reader's time zone for the heatmap.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import Column, Connection, select

from nilemetrics.protocol import wire_time
from nilemetrics.protocol.names import CLICK_EVENT, CLICK_GRID
from nilemetrics.server.tables import checkouts_t, errors_t, events_t, sessions_t

#: What the heatmap can count, and the time column each is placed by.
HEATMAP_FIGURES: dict[str, Column[Any]] = {
    "sessions": sessions_t.c.started_at,
    "conversions": checkouts_t.c.completed_at,
    "errors": errors_t.c.occurred_at,
}
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
#: Most elements ``--clicks`` lists.
TOP_ELEMENTS = 15


def heatmap(
    conn: Connection, since: datetime, until: datetime, zone: tzinfo, zone_name: str
) -> dict[str, Any]:
    """Sessions started, checkouts paid and payment errors per weekday (rows, Monday
    first) and hour of day (columns, 0 to 23), in ``zone``."""
    grids: dict[str, list[list[int]]] = {}
    for figure, column in HEATMAP_FIGURES.items():
        grid = [[0] * 24 for _ in WEEKDAYS]
        rows = conn.execution_options(yield_per=5000).execute(
            select(column).where((column >= since) & (column < until))
        )
        for (at,) in rows:
            local = at.astimezone(zone)
            grid[local.weekday()][local.hour] += 1
        grids[figure] = grid
    return {
        "since": wire_time(since),
        "until": wire_time(until),
        "timezone": zone_name,
        "weekdays": list(WEEKDAYS),
        "grids": grids,
        "totals": {figure: sum(map(sum, grid)) for figure, grid in grids.items()},
    }


def clicks(conn: Connection, page: str, since: datetime, until: datetime) -> dict[str, Any]:
    """Clicks (the tracker's ``data-clicks``) on ``page``, a path (``/product/tv-55``) or a
    page type (``product``): the most clicked elements and the density over the grid
    (rows top to bottom, columns left to right)."""
    e = events_t.c
    rows = conn.execution_options(yield_per=5000).execute(
        select(e.payload)
        .where((e.name == CLICK_EVENT) & (e.occurred_at >= since) & (e.occurred_at < until))
    )
    elements: Counter[str] = Counter()
    grid = [[0] * CLICK_GRID for _ in range(CLICK_GRID)]
    total = 0
    for (payload,) in rows:
        props = (payload or {}).get("properties") or {}
        if page not in (props.get("page"), props.get("pageType")):
            continue
        x, y = props.get("x"), props.get("y")
        if not isinstance(x, int) or not isinstance(y, int):
            continue
        if not (0 <= x < CLICK_GRID and 0 <= y < CLICK_GRID):
            continue
        total += 1
        elements[str(props.get("path"))] += 1
        grid[y][x] += 1
    ranked = sorted(elements.items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "since": wire_time(since),
        "until": wire_time(until),
        "page": page,
        "clicks": total,
        "elements": [
            {"path": path, "clicks": n, "share": round(n / total, 4)}
            for path, n in ranked[:TOP_ELEMENTS]
        ],
        "otherElements": max(len(ranked) - TOP_ELEMENTS, 0),
        "gridSize": CLICK_GRID,
        "grid": grid,
    }
