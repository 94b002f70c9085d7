"""A customer's journey as timeline lines (pure functions): pages, checkouts, attempts, the end."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from nilemetrics.protocol.history import JourneyOut, SessionOut
from nilemetrics.tui.screens.page_sessions import duration_text


@dataclass(frozen=True, slots=True)
class TimelineLine:
    """One line of the timeline: when, what kind, the text."""

    at: datetime | None
    kind: str
    """``page``, ``checkout``, ``payment``, ``error``, ``paid``, ``end``."""
    text: str


def _aware(at: datetime | None) -> datetime | None:
    if at is None:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _money(amount: float | None) -> str:
    return "" if amount is None else f"{amount:.2f}"


def lookup_params(text: str) -> dict[str, str]:
    """What typed text looks up: an email (has ``@``), a phone (digits, +, spaces), a user id."""
    value = text.strip()
    if "@" in value:
        return {"email": value}
    if value and all(c.isdigit() or c in "+-() ./" for c in value) and any(
            c.isdigit() for c in value):
        return {"phone": value}
    return {"user_id": value}


def who(session: SessionOut) -> str:
    """``ann@example.com · +49 170 …`` or the session id when nobody is known."""
    parts = [p for p in (session.email, session.phone, session.user_id and
                         f"user {session.user_id}") if p]
    return " · ".join(parts) if parts else f"anonymous session {session.session_id[:8]}"


def timeline(journey: JourneyOut) -> list[TimelineLine]:
    """Every page with its time on page, each checkout with its attempts, and where it ended."""
    lines: list[tuple[datetime, int, TimelineLine]] = []
    floor = datetime.min.replace(tzinfo=UTC)
    order = 0

    def add(at: datetime | None, kind: str, text: str) -> None:
        nonlocal order
        order += 1
        lines.append((_aware(at) or floor, order, TimelineLine(_aware(at), kind, text)))

    for page in journey.pages:
        name = page.page_type + (f" · {page.page_identifier}" if page.page_identifier else "")
        on_page = duration_text(page.seconds_on_page)
        still = " (still there)" if page.exited_at is None and journey.session.live else ""
        add(page.entered_at, "page", f"{name}  {on_page}{still}".rstrip())
    for checkout in journey.checkouts:
        items = f" · {checkout.item_count} item(s)" if checkout.item_count is not None else ""
        method = f" · {checkout.payment_method}" if checkout.payment_method else ""
        add(checkout.started_at, "checkout",
            f"checkout started · {_money(checkout.total_amount)}{method}{items}")
        if checkout.payment_started_at is not None:
            add(checkout.payment_started_at, "payment", "payment started")
        for error in checkout.errors:
            message = f" “{error.error_message}”" if error.error_message else ""
            amount = f" · {_money(error.amount)}" if error.amount is not None else ""
            add(error.at, "error",
                f"attempt {error.attempt} failed: {error.error_code or '(no code)'}"
                f"{message}{amount}")
        if checkout.completed_at is not None:
            tries = len(checkout.errors)
            after = f" after {tries} failed attempt(s)" if tries else ""
            add(checkout.completed_at, "paid", f"paid {_money(checkout.total_amount)}{after}")
        elif checkout.status in ("abandoned", "failed"):
            add(None, "end", f"checkout not paid (status {checkout.status})")
    lines.sort(key=lambda item: (item[0], item[1]))
    out = [line for _at, _order, line in lines]
    # Lines without a time (a checkout's outcome) go after the checkout, not first.
    out = [line for line in out if line.at is not None] + [
        line for line in out if line.at is None]
    session = journey.session
    if session.live:
        out.append(TimelineLine(None, "end", f"still on the site · on {session.page_type}"))
    else:
        ended = _aware(session.ended_at) or _aware(session.last_activity)
        left = journey.left_on or session.page_type or "?"
        paid = " after paying" if session.paid else " without paying" if journey.checkouts else ""
        add_text = f"left on {left}{paid}"
        out.append(TimelineLine(ended, "end", add_text))
    return out


def summary(journey: JourneyOut) -> str:
    """The journey's first line: who, browser and device, start, end and total time."""
    session = journey.session
    start = _aware(session.started_at)
    end = _aware(session.ended_at)
    span = f"{start.astimezone():%Y-%m-%d %H:%M:%S}" if start else "?"
    span += f" → {end.astimezone():%H:%M:%S}" if end else " → now" if session.live else ""
    device = " · ".join(p for p in (journey.browser, journey.device) if p)
    total = duration_text(journey.total_seconds)
    return " · ".join(p for p in (who(session), device, span, total and f"total {total}") if p)
