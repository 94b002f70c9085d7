"""Frame parsing, sparkline history, user agents, the spike count, durations and codes."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from nilemetrics.tui.model import (
    CodeCount,
    ErrorRow,
    FrameError,
    History,
    Metrics,
    age_text,
    errors_in_last_minute,
    item_label,
    item_name,
    parse_error_rows,
    parse_time,
    price_text,
    span_text,
    top_error_codes,
)
from nilemetrics.tui.screens.page_sessions import duration_text
from nilemetrics.tui.widgets.error_table import COLUMNS, column_widths
from nilemetrics.useragent import describe_user_agent
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


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-24T12:00:00Z", T0),
        ("2026-11-24T12:00:00", T0),  # naive: the server's UTC
        ("2026-11-24T13:00:00+01:00", T0),
        ("2026-11-24T12:00:00.250000Z", T0 + timedelta(milliseconds=250)),
        ("yesterday", None),
        ("", None),
        (1764000000, None),
        (None, None),
    ],
)
def test_parse_time(value: Any, expected: datetime | None) -> None:
    """ISO times become aware datetimes (naive means UTC); anything else becomes None."""
    parsed = parse_time(value)
    assert parsed == expected
    if parsed is not None:
        assert parsed.tzinfo is not None


def test_parse_time_keeps_the_offset_it_was_given() -> None:
    """A time with an offset keeps it (the screens convert to local time themselves)."""
    parsed = parse_time("2026-11-24T13:00:00+01:00")
    assert parsed is not None and parsed.utcoffset() == timedelta(hours=1)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0.0, "just now"), (0.99, "just now"), (1.0, "1 s ago"), (59.9, "59 s ago"),
     (60.0, "1 min ago"), (3599.0, "59 min ago"), (3600.0, "1 h ago"), (7300.0, "2 h ago")],
)
def test_age_text(seconds: float, expected: str) -> None:
    """The header's data age: seconds, then whole minutes, then whole hours."""
    assert age_text(seconds) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(10.0, "−10 s … now"), (50.0, "−50 s … now"), (60.0, "−1 min … now"),
     (150.0, "−2 min … now"), (600.0, "−10 min … now")],
)
def test_span_text(seconds: float, expected: str) -> None:
    """A sparkline's time axis: seconds below a minute, rounded minutes above."""
    assert span_text(seconds) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(None, ""), (0.0, "0 s"), (45.9, "45 s"), (60.0, "1 min 00 s"), (185.0, "3 min 05 s"),
     (3599.0, "59 min 59 s"), (3720.0, "1 h 02 min"), (90061.0, "25 h 01 min")],
)
def test_duration_text(seconds: float | None, expected: str) -> None:
    """Time on a page: seconds, then minutes and padded seconds, then hours and minutes."""
    assert duration_text(seconds) == expected


def test_errors_in_last_minute_skips_undated_and_future_rows() -> None:
    """A row without a time, or from after the server's now, is not in the last minute."""
    dated = ErrorRow.from_data(error_row(1, T0 - timedelta(seconds=10)))
    undated_raw = error_row(2, T0)
    undated_raw["payment_error_at"] = None
    undated = ErrorRow.from_data(undated_raw)
    future = ErrorRow.from_data(error_row(3, T0 + timedelta(seconds=5)))
    assert undated.at is None
    assert errors_in_last_minute([dated, undated, future], T0) == 1
    assert errors_in_last_minute([], T0) == 0


def test_top_error_codes_rank_by_count_then_latest() -> None:
    """Most frequent first; a tie goes to the code seen last; shares are of all rows."""
    rows = [ErrorRow.from_data(error_row(i, T0 - timedelta(seconds=s), code=code))
            for i, (s, code) in enumerate([(0, "expired_card"), (30, "card_declined"),
                                           (60, "card_declined"), (90, "expired_card"),
                                           (120, "processing_error")])]
    assert top_error_codes(rows) == [
        CodeCount("expired_card", 2, 0.4, T0),
        CodeCount("card_declined", 2, 0.4, T0 - timedelta(seconds=30)),
        CodeCount("processing_error", 1, 0.2, T0 - timedelta(seconds=120)),
    ]
    assert top_error_codes([]) == []


def test_top_error_codes_name_missing_codes_and_times() -> None:
    """Rows without a code count as "(none)"; a code never dated has no last-seen time."""
    raw = error_row(1, T0, code="")
    raw["error_details"] = None
    raw["payment_error_at"] = None
    codes = top_error_codes([ErrorRow.from_data(raw),
                             ErrorRow.from_data(error_row(2, T0, code="card_declined"))])
    assert codes == [CodeCount("card_declined", 1, 0.5, T0), CodeCount("(none)", 1, 0.5, None)]


def test_error_row_takes_nested_fields_when_flat_ones_are_missing() -> None:
    """The shop's client nests code, message and user agent in errorDetails; they are used."""
    raw = error_row(1, T0, code="card_declined", message="Declined")
    for key in ("error_code", "error_message", "user_agent"):
        raw[key] = None
    row = ErrorRow.from_data(raw)
    assert (row.error_code, row.error_message) == ("card_declined", "Declined")
    assert row.browser == "Chrome 131 · Windows"
    flat = ErrorRow.from_data({**raw, "error_code": "expired_card"})
    assert flat.error_code == "expired_card"  # the flat field wins


def test_error_row_without_id_is_keyed_by_session_and_attempt() -> None:
    """Rows without an id stay distinct per session, attempt and time (and duplicates collapse)."""
    first = {k: v for k, v in error_row(1, T0).items() if k != "id"}
    retry = {**first, "attempt": 2}
    rows, bad = parse_error_rows([first, retry, dict(first)])
    session = first["session_id"]
    assert [row.key for row in rows] == [f"s:{session}:1:2026-11-24T12:00:00Z",
                                         f"s:{session}:2:2026-11-24T12:00:00Z"]
    assert bad == 1


@pytest.mark.parametrize(
    ("raw", "expected"),
    [({"checkout_items": [], "item_count": 3}, "3"),
     ({"checkout_items": [], "item_count": None}, ""),
     ({"checkout_items": "not a list", "item_count": 0}, ""),
     ({"checkout_items": [{"sku": "A-1"}, {"price": 5}], "item_count": 2}, "2 · A-1")],
)
def test_items_text_without_names_or_items(raw: dict[str, Any], expected: str) -> None:
    """No items stored: the count alone; items without a name: only the named ones listed."""
    assert ErrorRow.from_data({**error_row(1, T0), **raw}).items_text == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("119.0", "119.00"), (9.5, "9.50"), (3, "3.00"), (None, ""),
     (True, ""), ("abc", ""), ("NaN", ""), ("Infinity", "")],
)
def test_price_text(value: Any, expected: str) -> None:
    """Prices show two decimals as the shop does; junk and non-finite values show nothing."""
    assert price_text(value) == expected


def test_item_name_and_label() -> None:
    """An item's name comes from name, title, productName, sku or id, in that order."""
    assert item_name({"title": "Mug", "sku": "M-1"}) == "Mug"
    assert item_name({"sku": "M-1", "id": 7}) == "M-1"
    assert item_name({"id": 0}) == "0"
    assert item_name({"price": 1}) == ""
    assert item_name("Loose tea") == "Loose tea" and item_name(None) == ""
    assert item_label({"name": "Mug", "price": "9.9"}) == "Mug 9.90"
    assert item_label({"name": "Mug"}) == "Mug"
    assert item_label({"price": "9.9"}) == ""


def test_other_pages_without_a_pages_field() -> None:
    """An older server without "pages" still fills Other pages from product, search and other."""
    m = Metrics.from_data({"product": 4, "search": 0, "other": 4, "homepage": 9})
    assert m.other_pages == {"other": 4, "product": 4}  # busiest first, then by name
    assert m.other_total == 8


def test_other_pages_from_pages_leave_out_panel_pages_and_zeros() -> None:
    """With "pages", every type without a panel of its own is listed; empty ones are not."""
    m = Metrics.from_data({"pages": {"homepage": 5, "category": 2, "product_listing": 3,
                                     "wishlist": 0, "search": 7}, "product": 99})
    assert m.other_pages == {"search": 7, "product_listing": 3}


def test_metrics_values_the_contract_refuses_become_defaults() -> None:
    """Fractions, negatives, booleans and rates outside 0..1 become 0 / None; the rest stays."""
    m = Metrics.from_data({"homepage": 3.9, "checkout": -2, "payment": True, "search": 4,
                           "paymentSuccessRate": 1.7, "categories": {"a": -1, "b": 2}})
    assert (m.homepage, m.checkout, m.payment, m.search) == (0, 0, 0, 4)
    assert m.payment_success_rate is None
    assert m.categories == {}  # a nested value that does not fit drops its whole field
    assert Metrics.from_data({"paymentSuccessRate": 0.5}).payment_success_rate == 0.5
    assert Metrics.from_data({"paymentSuccessRate": -0.5}).payment_success_rate is None
    assert Metrics.from_data({"lastUpdated": "soon"}).last_updated is None
    assert Metrics.from_data({}).last_updated is None
    assert Metrics.from_data({"lastUpdated": "2026-11-24T12:00:00Z"}).last_updated == T0


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
