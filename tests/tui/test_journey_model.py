"""What typed text looks up, how a journey reads as a timeline, how history is preloaded."""

from __future__ import annotations

from datetime import timedelta

import pytest

from nilemetrics.protocol.history import JourneyCheckout, JourneyOut, JourneyPage, SessionOut
from nilemetrics.tui.journey import lookup_params, timeline
from nilemetrics.tui.model import History
from tests.tui.recorded import T0


@pytest.mark.parametrize(("text", "params"), [
    ("  ann@example.com ", {"email": "ann@example.com"}),
    ("+49 170 1234567", {"phone": "+49 170 1234567"}),
    ("(030) 123-45", {"phone": "(030) 123-45"}),
    ("user-42", {"user_id": "user-42"}),
    ("42", {"phone": "42"}),
])
def test_lookup_params(text: str, params: dict[str, str]) -> None:
    """An @ means an email; digits with phone punctuation a phone; anything else a user id."""
    assert lookup_params(text) == params


def test_a_live_journey_ends_on_its_current_page_and_an_abandoned_checkout_says_so() -> None:
    """Pages in time order with the open one marked; the checkout's outcome; still on the site."""
    session = SessionOut(session_id="s", live=True, page_type="checkout",
                         started_at=T0)
    journey = JourneyOut(session=session, pages=[
        JourneyPage(page_type="checkout", entered_at=T0 + timedelta(seconds=30),
                    seconds_on_page=12.0),
        JourneyPage(page_type="homepage", entered_at=T0, exited_at=T0 + timedelta(seconds=30),
                    seconds_on_page=30.0),
    ], checkouts=[JourneyCheckout(status="abandoned", started_at=T0 + timedelta(seconds=31),
                                  total_amount=9.5, item_count=2)])
    assert [(line.kind, line.text) for line in timeline(journey)] == [
        ("page", "homepage  30 s"),
        ("page", "checkout  12 s (still there)"),
        ("checkout", "checkout started · 9.50 · 2 item(s)"),
        ("end", "checkout not paid (status abandoned)"),
        ("end", "still on the site · on checkout"),
    ]


def test_preload_fills_only_before_the_first_frame() -> None:
    """Server minutes older than the first frame fill in; newer ones never override frames."""
    history = History(span=600, bucket=10)
    history.record(T0, 7)
    history.preload([(T0 - timedelta(minutes=2), 3), (T0 - timedelta(minutes=1), 5),
                     (T0, 99)])
    values = history.values(T0)
    assert len(values) == 13  # 12:58:00 … 12:00:00 in 10 s bars
    assert values == [3.0] * 6 + [5.0] * 6 + [7.0]
    # A second preload (a reconnect) of the same minutes changes nothing.
    history.preload([(T0 - timedelta(minutes=2), 3), (T0 - timedelta(minutes=1), 5)])
    assert history.values(T0) == values
