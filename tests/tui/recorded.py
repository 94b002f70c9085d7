"""A recorded feed, sample frames and waiting helpers for dashboard tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from textual.app import App
from textual.pilot import Pilot

from nilemetrics.tui.feed import Connected, FeedEvent, Frame

T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)

CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


def iso(at: datetime) -> str:
    """The server's timestamp format."""
    return at.isoformat().replace("+00:00", "Z")


class RecordedFeed:
    """A feed the test drives: events given up front, then whatever the test pushes.

    It never ends on its own (a live feed does not either) unless :meth:`end` is called.
    """

    def __init__(self, events: Iterable[FeedEvent] = ()) -> None:
        self._queue: asyncio.Queue[FeedEvent | None] = asyncio.Queue()
        for event in events:
            self._queue.put_nowait(event)
        self.started = 0

    def push(self, *events: FeedEvent) -> None:
        """Deliver events to the app."""
        for event in events:
            self._queue.put_nowait(event)

    def end(self) -> None:
        """Make the feed stop."""
        self._queue.put_nowait(None)

    async def _iterate(self) -> AsyncIterator[FeedEvent]:
        self.started += 1
        while (event := await self._queue.get()) is not None:
            yield event

    def factory(self) -> AsyncIterator[FeedEvent]:
        """The feed factory handed to the app."""
        return self._iterate()


class FakeMonotonic:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


def metrics_frame(at: datetime = T0, **overrides: Any) -> Frame:
    """A ``metrics-update`` frame with plausible numbers, changed by ``overrides``."""
    data: dict[str, Any] = {
        "homepage": 12,
        "categories": {"shoes": 5, "summer-hats-and-accessories": 3, "bags": 2, "socks": 1},
        "offers": {"black-friday": 4, "two-for-one": 1},
        "product": 6,
        "search": 2,
        "checkout": 3,
        "payment": 2,
        "paymentError": 1,
        "other": 0,
        "checkoutsLastHour": 20,
        "paymentErrorsLastHour": 3,
        "paymentSuccessesLastHour": 14,
        "paymentFailuresLastHour": 2,
        "paymentSuccessRate": 0.875,
        "sessionsLastHour": 120,
        "checkoutSessionsLastHour": 19,
        "paymentSessionsLastHour": 16,
        "paidSessionsLastHour": 14,
        "customEvents": {"add_to_cart": 9, "newsletter_signup": 2, "experiment": 1},
        "liveWindowSeconds": 90.0,
        "lastUpdated": iso(at),
    }
    data.update(overrides)
    if "pages" not in overrides:
        # As the server sends it: every page type, adding up to liveSessions.
        pages = {page: data[key] for page, key in _PAGE_KEYS.items()}
        pages["category"] = sum(data["categories"].values())
        pages["offer"] = sum(data["offers"].values())
        data["pages"] = {page: n for page, n in pages.items() if n}
    if "liveSessions" not in overrides:
        data["liveSessions"] = sum(data["pages"].values())
    return Frame("metrics-update", data)


_PAGE_KEYS = {"homepage": "homepage", "product": "product", "search": "search",
              "checkout": "checkout", "payment": "payment", "payment_error": "paymentError",
              "other": "other"}


def error_row(
    row_id: int,
    at: datetime,
    *,
    email: str | None = None,
    code: str = "card_declined",
    message: str = "Your card was declined by the issuing bank",
    amount: float | str | None = 59.97,
    user_agent: str = CHROME_WINDOWS,
) -> dict[str, Any]:
    """One ``payment-errors-update`` row as the server sends it."""
    return {
        "id": row_id,
        "session_id": f"00000000-0000-4000-8000-{row_id:012d}",
        "attempt": 1,
        "email": email if email is not None else f"customer{row_id}@example.com",
        "phone": "+49 170 1234567",
        "checkout_items": [
            {"name": "Tea mug", "quantity": 2, "price": "9.99"},
            {"name": "Green tea", "quantity": 1, "price": "39.99"},
        ],
        "item_count": 2,
        "total_amount": amount,
        "payment_method": "card",
        "payment_error_at": iso(at),
        "error_code": code,
        "error_message": message,
        "error_details": {
            "errorCode": code,
            "errorMessage": message,
            "errorDetails": {"gateway": "stripe", "declineCode": "insufficient_funds"},
            "timestamp": iso(at),
            "userAgent": user_agent,
            "url": "https://shop.test/payment",
        },
        "ip_address": "203.0.113.0",
        "user_agent": user_agent,
        "checkout_status": "failed",
    }


def errors_frame(rows: list[dict[str, Any]]) -> Frame:
    """A ``payment-errors-update`` frame (rows newest first)."""
    return Frame("payment-errors-update", rows)


def spread_rows(count: int, *, end: datetime = T0, every: float = 300.0) -> list[dict[str, Any]]:
    """``count`` rows, newest first, ``every`` seconds apart up to ``end``."""
    return [
        error_row(count - i, end - timedelta(seconds=every * i),
                  email=f"customer{count - i}@example.com")
        for i in range(count)
    ]


def standard_events() -> list[FeedEvent]:
    """What a fresh subscription delivers: connected, the numbers, the error rows."""
    rows = [
        error_row(3, T0 - timedelta(seconds=20), email="anna@example.com"),
        error_row(2, T0 - timedelta(seconds=400), email="ben@example.org", code="expired_card",
                  message="Your card has expired", amount=120.0, user_agent=SAFARI_IPHONE),
        error_row(1, T0 - timedelta(seconds=1900), email="chloe@example.net",
                  code="processing_error", message="An error occurred while processing"),
    ]
    return [Connected(), metrics_frame(), errors_frame(rows)]


async def wait_until(
    pilot: Pilot[Any], predicate: Callable[[], bool], timeout: float = 10.0, what: str = ""
) -> None:
    """Let the app run until ``predicate()`` holds (the feed never goes idle)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await pilot.pause(0.02)


def screen_text(app: App[Any]) -> str:
    """The screen as plain text, line by line."""
    strips = app.screen._compositor.render_strips()
    return "\n".join(strip.text for strip in strips)


def _digit_glyphs() -> dict[tuple[str, str, str], str]:
    from textual.renderables.digits import DIGITS, DIGITS3X3, DIGITS3X3_BOLD

    glyphs: dict[tuple[str, str, str], str] = {}
    for table in (DIGITS3X3, DIGITS3X3_BOLD):
        for index, char in enumerate(DIGITS):
            lines = table[index * 3: index * 3 + 3]
            key = (lines[0].ljust(3)[:3], lines[1].ljust(3)[:3], lines[2].ljust(3)[:3])
            glyphs.setdefault(key, char)
    return glyphs


def read_digits(app: App[Any], widget: Any) -> str:
    """What a ``Digits`` widget shows, read back from the screen's characters."""
    lines = screen_text(app).splitlines()
    region = widget.region
    rows = [lines[region.y + i][region.x: region.x + region.width] for i in range(3)]
    glyphs = _digit_glyphs()
    out = ""
    for x in range(0, region.width - region.width % 3, 3):
        key = tuple(row[x: x + 3].ljust(3) for row in rows)
        if key == ("   ", "   ", "   "):
            break
        out += glyphs.get(key, "?")  # type: ignore[call-overload]
    return out
