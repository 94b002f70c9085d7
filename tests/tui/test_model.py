"""Frame parsing, sparkline history, user agents and the spike count."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from nilemetrics.tui.model import (
    ErrorRow,
    FrameError,
    History,
    Metrics,
    errors_in_last_minute,
    parse_error_rows,
)
from nilemetrics.tui.useragent import describe_user_agent
from nilemetrics.tui.widgets.error_table import COLUMNS, column_widths
from tests.tui.recorded import CHROME_WINDOWS, SAFARI_IPHONE, T0, error_row, metrics_frame


@pytest.mark.parametrize(
    ("agent", "expected"),
    [
        (CHROME_WINDOWS, "Chrome 131 · Windows"),
        (SAFARI_IPHONE, "Safari 17 · iOS"),
        ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
         "Firefox 133 · Linux"),
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like "
         "Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.86", "Edge 131 · macOS"),
        ("Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
         "SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36",
         "Samsung Internet 25 · Android"),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0.0.0", "Chrome 131 · Windows"),
        ("curl/8.5.0", "curl 8"),
        ("SomethingOdd/1.0", "SomethingOdd/1.0"),
        ("", ""),
    ],
)
def test_readable_browser(agent: str, expected: str) -> None:
    """User agents become 'Browser major · Platform'."""
    assert describe_user_agent(agent) == expected


def test_metrics_parse_and_tolerate_odd_fields() -> None:
    """Numbers parse; odd values become 0/None instead of crashing."""
    m = Metrics.from_data(metrics_frame().data)
    assert (m.homepage, m.category_total, m.offer_total, m.payment_success_rate) == (
        12, 11, 5, 0.875)
    assert m.last_updated == T0
    odd = Metrics.from_data({"homepage": "x", "categories": [1], "paymentSuccessRate": True})
    assert (odd.homepage, odd.categories, odd.payment_success_rate) == (0, {}, None)
    with pytest.raises(FrameError):
        Metrics.from_data([1])


def test_error_rows_parse_newest_first_and_skip_bad_rows() -> None:
    """Rows are sorted newest first; non-objects and duplicates are counted, not shown."""
    older = error_row(1, T0 - timedelta(minutes=5))
    newer = error_row(2, T0)
    rows, bad = parse_error_rows([older, "junk", newer, dict(newer)])
    assert [r.key for r in rows] == ["id:2", "id:1"]
    assert bad == 2
    with pytest.raises(FrameError):
        parse_error_rows({"rows": []})


def test_error_row_fields() -> None:
    """Amount keeps two decimals, items show count and names, flat fields win over nested."""
    raw = error_row(1, T0, amount="5")
    raw["error_code"] = None  # only the nested client form carries it
    row = ErrorRow.from_data(raw)
    assert row.amount == Decimal("5")
    assert row.amount_text == "5.00"
    assert row.items_text == "2 · Tea mug 9.99, Green tea 39.99"
    assert row.error_code == "card_declined"
    assert row.matches("CARD_decl") and row.matches("customer1@") and not row.matches("paypal")


def test_errors_in_last_minute() -> None:
    """Only rows in the minute up to now count."""
    rows = [ErrorRow.from_data(error_row(i, T0 - timedelta(seconds=s)))
            for i, s in enumerate((0, 30, 59, 60, 300))]
    assert errors_in_last_minute(rows, T0) == 3


def test_history_forward_fills_and_keeps_ten_minutes() -> None:
    """Buckets repeat the last value; the span is capped at ten minutes."""
    history = History(span=600, bucket=10)
    history.record(T0, 4)
    history.record(T0 + timedelta(seconds=5), 2)  # same bucket: the highest stays
    history.record(T0 + timedelta(seconds=35), 1)
    assert history.values(T0 + timedelta(seconds=45)) == [4, 4, 4, 1, 1]
    history.record(T0 + timedelta(minutes=20), 9)
    values = history.values(T0 + timedelta(minutes=20))
    assert len(values) == 60 and values[0] == 1 and values[-1] == 9


def test_column_widths_fill_the_room_or_drop_columns() -> None:
    """Wide: every column, widths summing to the room. Narrow: the important ones that fit."""
    rows = [ErrorRow.from_data(error_row(1, T0, code="processing_error"))]
    wide = column_widths(196, 1, rows)
    assert len(wide) == len(COLUMNS)
    assert sum(wide.values()) + 2 * len(COLUMNS) == 196
    narrow = column_widths(76, 1, rows)
    assert list(narrow) == ["time", "code", "amount", "email", "message"]
    assert sum(narrow.values()) + 2 * len(narrow) == 76


@pytest.mark.parametrize("available", [60, 72, 76, 90, 116, 150, 196])
def test_error_code_is_never_cut_while_a_lower_column_gets_room(available: int) -> None:
    """The Error column is as wide as its longest code whenever a less important column shows."""
    code = "insufficient_funds_after_3ds"
    rows = [ErrorRow.from_data(error_row(1, T0, code=code))]
    widths = column_widths(available, 1, rows)
    assert widths["code"] >= len(code)
    assert widths["time"] >= 8 and widths["amount"] >= len("59.97")
    assert sum(widths.values()) + 2 * len(widths) <= available


def test_alerts_are_parsed_leniently() -> None:
    """``alerts`` items become FiringAlerts; a missing field, odd items or no rule are skipped."""
    from nilemetrics.tui.model import FiringAlert, Metrics

    assert Metrics.from_data({}).alerts == ()
    assert Metrics.from_data({"alerts": None}).alerts == ()
    parsed = Metrics.from_data({"alerts": [
        {"rule": "payment errors", "metric": "payment_errors", "value": 7, "threshold": 5,
         "direction": "above", "since": "2026-11-24T11:58:00Z"},
        {"rule": ""}, "junk", {"rule": "odd", "value": "seven", "threshold": True},
    ]}).alerts
    assert [alert.rule for alert in parsed] == ["payment errors", "odd"]
    assert parsed[0].condition_text == "7 > 5"
    assert parsed[0].since is not None and parsed[0].since.hour == 11
    assert parsed[1] == FiringAlert(rule="odd")
    assert parsed[1].condition_text == ""
