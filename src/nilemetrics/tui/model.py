"""What the dashboard knows: live numbers and payment-error rows parsed from frames.

Frames are parsed with the contract's models (``nilemetrics.protocol.pushed``),
leniently per field (a missing or odd value becomes 0 / empty, see
``nilemetrics.protocol.lenient``), strictly per frame shape (a ``metrics-update``
whose data is not an object is refused).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ConfigDict, field_validator

from nilemetrics.protocol.lenient import lenient
from nilemetrics.protocol.pushed import FiringAlert as ProtocolFiringAlert
from nilemetrics.protocol.pushed import LiveMetrics, PaymentErrorRow
from nilemetrics.useragent import describe_user_agent


class FrameError(ValueError):
    """The frame's data does not have the shape its event name promises."""


def parse_time(value: Any) -> datetime | None:
    """An aware datetime from an ISO 8601 string (``Z`` allowed); naive means UTC."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


#: Page types shown in panels of their own; every other type goes to "Other pages".
OWN_PANEL_PAGES = frozenset({"homepage", "category", "offer", "checkout", "payment",
                             "payment_error"})


class FiringAlert(ProtocolFiringAlert):
    """An alert rule the server says is firing (``alerts`` of a ``metrics-update``)."""

    model_config = ConfigDict(frozen=True)

    @property
    def condition_text(self) -> str:
        """``7 > 5``, ``50% < 80%`` (success rates as percentages), or empty if unknown."""
        if self.value is None or self.threshold is None:
            return ""
        sign = {"above": ">", "below": "<"}.get(self.direction, "vs")
        if self.metric == "payment_success_rate":
            return f"{self.value * 100:.0f}% {sign} {self.threshold * 100:.0f}%"
        return f"{self.value:g} {sign} {self.threshold:g}"


class Metrics(LiveMetrics):
    """One ``metrics-update`` body, as the dashboard reads it."""

    model_config = ConfigDict(frozen=True)

    alerts: tuple[FiringAlert, ...] = ()  # type: ignore[assignment]

    @field_validator("alerts", mode="before")
    @classmethod
    def _named_alerts(cls, value: Any) -> tuple[FiringAlert, ...]:
        # Each alert on its own: an odd item is skipped, not the whole list (a server
        # without alerts sends none).
        if not isinstance(value, list | tuple):
            return ()
        parsed = (lenient(FiringAlert, item) for item in value if isinstance(item, dict))
        return tuple(alert for alert in parsed if alert.rule)

    @property
    def other_pages(self) -> dict[str, int]:
        """Live sessions per page type that has no panel of its own, busiest first.

        From ``pages`` (every page type the server reports, any slug a shop sends);
        a server without ``pages`` gives product, search and other.
        """
        if self.pages:
            rest = {k: n for k, n in self.pages.items() if k not in OWN_PANEL_PAGES and n}
        else:
            rest = {k: n for k, n in (("product", self.product), ("search", self.search),
                                      ("other", self.other)) if n}
        return dict(sorted(rest.items(), key=lambda kv: (-kv[1], kv[0])))

    @property
    def other_total(self) -> int:
        """Live sessions on a page type without a panel of its own."""
        return sum(self.other_pages.values())

    @property
    def category_total(self) -> int:
        """Live sessions on any category page."""
        return sum(self.categories.values())

    @property
    def offer_total(self) -> int:
        """Live sessions on any offer page."""
        return sum(self.offers.values())

    @classmethod
    def from_data(cls, data: Any) -> Metrics:
        """Parse a ``metrics-update`` body; raise :class:`FrameError` if it is not an object."""
        if not isinstance(data, dict):
            raise FrameError("metrics-update data is not an object")
        return lenient(cls, data)


@dataclass(frozen=True, slots=True)
class ErrorRow:
    """One payment error as the table, the detail screen and the CSV export see it."""

    key: str
    at: datetime | None
    email: str
    phone: str
    amount: Decimal | None
    payment_method: str
    items: list[Any]
    item_count: int | None
    error_code: str
    error_message: str
    ip_address: str
    user_agent: str
    browser: str
    raw: dict[str, Any]

    @property
    def amount_text(self) -> str:
        """The amount with exactly two decimals, or empty."""
        return "" if self.amount is None else f"{self.amount:.2f}"

    @property
    def items_text(self) -> str:
        """Item count and the items with their prices: ``2 · Mug 9.99, Tea 39.99``."""
        if not self.items:
            return "" if not self.item_count else str(self.item_count)
        names = [name for name in (item_label(item) for item in self.items) if name]
        return f"{len(self.items)} · {', '.join(names)}" if names else str(len(self.items))

    def matches(self, needle: str) -> bool:
        """Whether the filter text occurs in the email, error code or message."""
        if not needle:
            return True
        needle = needle.casefold()
        return any(
            needle in part.casefold() for part in (self.email, self.error_code, self.error_message)
        )

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> ErrorRow:
        """Parse one row of ``payment-errors-update`` (flat fields win over the nested form)."""
        row = lenient(PaymentErrorRow, data)
        nested = row.error_details or {}
        code = _text(row.error_code or nested.get("errorCode"))
        message = _text(row.error_message or nested.get("errorMessage"))
        user_agent = _text(row.user_agent or nested.get("userAgent"))
        at = row.payment_error_at
        if at is not None and at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        key = (
            f"id:{row.id}"
            if row.id is not None
            else f"s:{row.session_id}:{row.attempt}:{data.get('payment_error_at')}"
        )
        return cls(
            key=key,
            at=at,
            email=_text(row.email),
            phone=_text(row.phone),
            amount=_amount(row.total_amount),
            payment_method=_text(row.payment_method),
            items=row.checkout_items or [],
            item_count=row.item_count if row.item_count is None or row.item_count >= 0
            else None,
            error_code=code,
            error_message=message,
            ip_address=_text(row.ip_address),
            user_agent=user_agent,
            browser=describe_user_agent(user_agent),
            raw=data,
        )


def item_name(item: Any) -> str:
    """A checkout item's readable name (``name`` or ``title``), or its text."""
    if isinstance(item, dict):
        for key in ("name", "title", "productName", "sku", "id"):
            value = item.get(key)
            if value not in (None, ""):
                return str(value)
        return ""
    return "" if item is None else str(item)


def item_label(item: Any) -> str:
    """An item's name and, when known, its price with two decimals: ``Mug 9.99``."""
    name = item_name(item)
    price = price_text(item.get("price")) if isinstance(item, dict) else ""
    return f"{name} {price}" if name and price else name


def price_text(value: Any) -> str:
    """A price as the shop shows it, with exactly two decimals (``119.0`` → ``119.00``)."""
    amount = _amount(value)
    return "" if amount is None else f"{amount:.2f}"


def _amount(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def parse_error_rows(data: Any) -> tuple[list[ErrorRow], int]:
    """Parse ``payment-errors-update`` data: the rows, and how many were unusable.

    Raise :class:`FrameError` if the data is not a list. Rows come newest first.
    """
    if not isinstance(data, list):
        raise FrameError("payment-errors-update data is not a list")
    rows: list[ErrorRow] = []
    seen: set[str] = set()
    bad = 0
    for item in data:
        if not isinstance(item, dict):
            bad += 1
            continue
        row = ErrorRow.from_data(item)
        if row.key in seen:
            bad += 1
            continue
        seen.add(row.key)
        rows.append(row)
    floor = datetime.min.replace(tzinfo=UTC)
    rows.sort(key=lambda row: row.at or floor, reverse=True)
    return rows, bad


def errors_in_last_minute(rows: list[ErrorRow], now: datetime) -> int:
    """How many of the rows happened in the minute up to ``now``."""
    since = now - timedelta(minutes=1)
    return sum(1 for row in rows if row.at is not None and since < row.at <= now)


@dataclass(frozen=True, slots=True)
class CodeCount:
    """One error code's share of the rows received."""

    code: str
    count: int
    share: float
    last_seen: datetime | None


def top_error_codes(rows: list[ErrorRow]) -> list[CodeCount]:
    """Error codes among ``rows``, most frequent first (ties: the latest seen first)."""
    counts: dict[str, int] = {}
    last: dict[str, datetime | None] = {}
    for row in rows:
        code = row.error_code or "(none)"
        counts[code] = counts.get(code, 0) + 1
        seen = last.get(code)
        if row.at is not None and (seen is None or row.at > seen):
            last[code] = row.at
        else:
            last.setdefault(code, None)

    def latest(code: str) -> float:
        seen = last[code]
        return seen.timestamp() if seen is not None else float("-inf")

    ranked = sorted(counts, key=lambda c: (-counts[c], -latest(c), c))
    total = len(rows)
    return [CodeCount(code, counts[code], counts[code] / total, last[code]) for code in ranked]


def age_text(seconds: float) -> str:
    """How long ago, for the header: ``just now``, ``3 s ago``, ``2 min ago``, ``1 h ago``."""
    if seconds < 1:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    return f"{int(seconds // 3600)} h ago"


def span_text(seconds: float) -> str:
    """A sparkline's span as its time axis: ``−10 min … now``."""
    if seconds >= 60:
        return f"−{round(seconds / 60)} min … now"
    return f"−{int(seconds)} s … now"


class History:
    """A value's last ``span`` seconds in fixed buckets, kept from the frames received.

    Each bucket holds the highest value seen in it; a bucket without a frame
    repeats the last known value (the numbers did not change).
    """

    def __init__(self, span: float = 600.0, bucket: float = 10.0) -> None:
        self.bucket = bucket
        self.size = int(span // bucket)
        self._buckets: deque[tuple[int, int]] = deque()
        self._first: int | None = None

    def record(self, at: datetime, value: int) -> None:
        """Note ``value`` at time ``at``."""
        index = int(at.timestamp() // self.bucket)
        if self._buckets and self._buckets[-1][0] == index:
            self._buckets[-1] = (index, max(self._buckets[-1][1], value))
            return
        if self._buckets and self._buckets[-1][0] > index:
            return  # frames from the past (a clock jump): keep the series monotonic
        self._buckets.append((index, value))
        if self._first is None:
            self._first = index
        # Keep one bucket from before the span: it is the value the span starts with.
        while len(self._buckets) > 1 and self._buckets[1][0] <= index - self.size:
            self._buckets.popleft()

    def preload(self, points: Iterable[tuple[datetime, int]]) -> None:
        """Fill in values from before the dashboard started (the server's history).

        Only buckets older than the first frame received are taken: what the
        frames said since is newer than any history.
        """
        first_live = self._buckets[0][0] if self._buckets else None
        older: dict[int, int] = {}
        for at, value in points:
            index = int(at.timestamp() // self.bucket)
            if first_live is None or index < first_live:
                older[index] = max(older.get(index, 0), value)
        if not older:
            return
        merged = deque([*sorted(older.items()), *self._buckets])
        last = merged[-1][0]
        while len(merged) > 1 and merged[1][0] <= last - self.size:
            merged.popleft()
        self._buckets = merged
        self._first = merged[0][0]

    def values(self, now: datetime) -> list[float]:
        """One value per bucket of the span ending at ``now``, oldest first.

        The series starts at the first bucket the dashboard saw (not at zero:
        before it started watching, nothing is known).
        """
        end = int(now.timestamp() // self.bucket)
        if self._first is None:
            return []
        start = max(end - self.size + 1, min(self._first, end))
        out: list[float] = []
        known = 0.0
        buckets = iter(self._buckets)
        pending = next(buckets, None)
        for index in range(start, end + 1):
            while pending is not None and pending[0] <= index:
                known = float(pending[1])
                pending = next(buckets, None)
            out.append(known)
        return out
