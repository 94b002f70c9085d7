"""Recorded answers of the history, journey and report endpoints, served over httpx.

The bodies are the contract's models (``nilemetrics.protocol.history``) dumped
as the server sends them; the dashboard's real HTTP client reads them through
an ``httpx.MockTransport``, so its URLs, parameters and parsing are exercised.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from nilemetrics.protocol.history import (
    STEP_SECONDS,
    HistoryOut,
    HistoryPoint,
    JourneyAttempt,
    JourneyCheckout,
    JourneyOut,
    JourneyPage,
    SessionOut,
    SessionsOut,
    Step,
)
from nilemetrics.protocol.names import API_PREFIX, wire_time
from nilemetrics.tui.history_api import HistoryApi
from tests.tui.recorded import SAFARI_IPHONE, T0, error_row, metrics_frame


def minute_point(at: datetime) -> HistoryPoint:
    """A deterministic minute of shop traffic: busier by day, a payment-error burst at 03:10."""
    minute = int(at.timestamp() // 60)
    hour = at.hour
    base = 4 + (hour * 7) % 13 + (minute % 5)
    burst = at.hour == 3 and 8 <= at.minute <= 14
    errors = (6 if burst else 0) + (1 if minute % 7 == 0 else 0)
    pages = {"homepage": base, "category": base // 2, "checkout": 1 + minute % 3,
             "payment": minute % 2, "product": minute % 4}
    if errors:
        pages["payment_error"] = min(errors, 3)
    codes = {"card_declined": errors - errors // 3, "expired_card": errors // 3} if errors else {}
    return HistoryPoint(
        at=at, live_sessions=sum(pages.values()), pages=pages,
        sessions_started=base // 2, page_visits=base * 3, checkouts_started=1 + minute % 2,
        payment_errors=errors, payment_errors_by_code={k: v for k, v in codes.items() if v},
        payment_successes=minute % 3, amount_paid=round((minute % 3) * 59.97, 2),
        amount_failed=round(errors * 42.5, 2))


def history_body(since: datetime, until: datetime, step: Step) -> HistoryOut:
    """Every bucket from ``since`` to ``until``: minutes summed (live: the largest)."""
    width = STEP_SECONDS[step]
    start = int(since.timestamp() // width) * width
    points = []
    for bucket in range(start, int(until.timestamp()), width):
        at = datetime.fromtimestamp(bucket, UTC)
        minutes = [minute_point(at + timedelta(minutes=i)) for i in range(0, width // 60,
                                                                            max(width // 3600, 1))]
        first = minutes[0]
        points.append(first.model_copy(update={
            "at": at,
            "live_sessions": max(m.live_sessions for m in minutes),
            "pages": {k: max(m.pages.get(k, 0) for m in minutes)
                      for k in {k for m in minutes for k in m.pages}},
            "page_visits": sum(m.page_visits for m in minutes),
            "payment_errors": sum(m.payment_errors for m in minutes),
            "payment_successes": sum(m.payment_successes for m in minutes),
            "payment_errors_by_code": {
                code: sum(m.payment_errors_by_code.get(code, 0) for m in minutes)
                for code in {c for m in minutes for c in m.payment_errors_by_code}},
        }))
    return HistoryOut(since=since, until=until, step=step, points=points)


def snapshot_body(at: datetime) -> dict[str, Any]:
    """The live-metrics body as of a minute: that minute's pages and its hour's figures."""
    point = minute_point(at)
    pages = point.pages
    data: dict[str, Any] = metrics_frame(
        at + timedelta(seconds=59),
        homepage=pages.get("homepage", 0), categories={"shoes": pages.get("category", 0)},
        offers={}, product=pages.get("product", 0), search=0,
        checkout=pages.get("checkout", 0), payment=pages.get("payment", 0),
        paymentError=pages.get("payment_error", 0),
        paymentErrorsLastHour=sum(minute_point(at - timedelta(minutes=i)).payment_errors
                                  for i in range(60)),
    ).data
    return data


def errors_body(until: datetime) -> list[dict[str, Any]]:
    """The payment errors of the hour before ``until`` (at most 50, newest first)."""
    rows: list[dict[str, Any]] = []
    at = until.replace(second=0, microsecond=0) - timedelta(minutes=1)
    row_id = int(at.timestamp() // 60) * 10
    while len(rows) < 50 and at > until - timedelta(hours=1):
        point = minute_point(at)
        for i in range(point.payment_errors):
            code = "expired_card" if i % 3 == 2 else "card_declined"
            rows.append(error_row(row_id - i, at + timedelta(seconds=50 - i * 5),
                                  email=f"buyer{(row_id - i) % 97}@example.com", code=code))
        at -= timedelta(minutes=1)
        row_id -= 10
    return rows[:50]


ANN = "00000000-0000-4000-8000-0000000000a1"
ANN_EARLIER = "00000000-0000-4000-8000-0000000000a0"


def ann_sessions() -> SessionsOut:
    """Ann's two sessions, newest first."""
    return SessionsOut(total=2, offset=0, limit=50, sessions=[
        SessionOut(session_id=ANN, email="ann@example.com", phone="+49 170 1234567",
                   started_at=T0 - timedelta(minutes=9), last_activity=T0 - timedelta(minutes=1),
                   ended_at=T0, live=False, page_type="payment_error", page_visits=5,
                   checkouts=1, payment_errors=2, paid=False),
        SessionOut(session_id=ANN_EARLIER, email="ann@example.com",
                   started_at=T0 - timedelta(days=2), ended_at=T0 - timedelta(days=2, minutes=-7),
                   live=False, page_type="thank-you", page_visits=4, checkouts=1, paid=True),
    ])


def ann_journey() -> JourneyOut:
    """Ann's latest session: browsing, a checkout, two declined attempts, gone."""
    start = T0 - timedelta(minutes=9)

    def page(kind: str, ident: str | None, at: float, until: float) -> JourneyPage:
        return JourneyPage(page_type=kind, page_identifier=ident,
                           entered_at=start + timedelta(seconds=at),
                           exited_at=start + timedelta(seconds=until),
                           seconds_on_page=until - at)

    return JourneyOut(
        session=ann_sessions().sessions[0], browser="Safari 17 · iOS", device="mobile",
        user_agent=SAFARI_IPHONE, total_seconds=540.0,
        pages=[page("homepage", None, 0, 45), page("category", "teapots", 45, 175),
               page("product", "cast-iron-teapot", 175, 300), page("checkout", None, 300, 360),
               page("payment", None, 360, 420), page("payment_error", None, 420, 480)],
        checkouts=[JourneyCheckout(
            id=7, status="failed", started_at=start + timedelta(seconds=300),
            payment_started_at=start + timedelta(seconds=365), total_amount=59.97,
            payment_method="card", item_count=1,
            errors=[JourneyAttempt(attempt=1, at=start + timedelta(seconds=380),
                                   error_code="card_declined",
                                   error_message="Your card was declined", amount=59.97),
                    JourneyAttempt(attempt=2, at=start + timedelta(seconds=415),
                                   error_code="expired_card",
                                   error_message="Your card has expired", amount=59.97)])],
        left_on="payment_error")


def report_body(since: datetime, until: datetime) -> dict[str, Any]:
    """A report with the keys of ``server/reports.py``."""
    return {
        "since": wire_time(since), "until": wire_time(until),
        "timeOnPage": {
            "byPageType": [{"pageType": "homepage", "visits": 420, "avgSeconds": 31.5},
                           {"pageType": "category", "visits": 260, "avgSeconds": 48.25},
                           {"pageType": "checkout", "visits": 61, "avgSeconds": 95.0}],
            "byCategory": [{"identifier": "teapots", "visits": 150, "avgSeconds": 52.0}],
            "byOffer": [],
        },
        "funnel": [
            {"step": "sessions", "sessions": 500, "dropOff": None, "dropOffRate": None,
             "conversion": 1.0},
            {"step": "checkout", "sessions": 60, "dropOff": 440, "dropOffRate": 0.88,
             "conversion": 0.12},
            {"step": "payment", "sessions": 48, "dropOff": 12, "dropOffRate": 0.2,
             "conversion": 0.096},
            {"step": "paid", "sessions": 36, "dropOff": 12, "dropOffRate": 0.25,
             "conversion": 0.072},
        ],
        "abandonment": [
            {"pageType": "payment_error", "pageIdentifier": None, "sessions": 9, "share": 0.375},
            {"pageType": "checkout", "pageIdentifier": None, "sessions": 8, "share": 0.3333},
            {"pageType": "category", "pageIdentifier": "teapots", "sessions": 7,
             "share": 0.2917},
        ],
        "paymentErrors": [
            {"errorCode": "card_declined", "errors": 21, "checkouts": 15,
             "amountAtStake": "899.55", "amountRecovered": "359.82"},
            {"errorCode": "expired_card", "errors": 6, "checkouts": 6,
             "amountAtStake": "240.00", "amountRecovered": "0.00"},
        ],
        "retries": {"failedCheckouts": 21, "succeededAfterRetry": 6,
                    "succeededAfterRetryRate": 0.2857,
                    "byFailures": [{"failures": 1, "checkouts": 15, "succeeded": 5,
                                    "shareOfFailedCheckouts": 0.2381},
                                   {"failures": 2, "checkouts": 6, "succeeded": 1,
                                    "shareOfFailedCheckouts": 0.0476}]},
        "paymentSuccess": {"checkouts": 60, "checkoutsWithOutcome": 51, "paid": 36,
                           "successRate": 0.7059, "paymentAttempts": 63,
                           "attemptSuccessRate": 0.5714},
    }


def _at(request: httpx.Request, name: str) -> datetime:
    return datetime.fromisoformat(request.url.params[name].replace("Z", "+00:00"))


class RecordedApi:
    """The endpoints' recorded answers; ``requests`` notes every path and query asked."""

    def __init__(self, *, missing: bool = False) -> None:
        self.requests: list[str] = []
        self.missing = missing
        """Answer 404 everywhere, as a server without these endpoints does."""

    def _dump(self, body: Any) -> httpx.Response:
        if hasattr(body, "model_dump"):
            body = body.model_dump(mode="json", by_alias=True)
        return httpx.Response(200, content=json.dumps(body),
                              headers={"content-type": "application/json"})

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request from the recordings."""
        path = request.url.path.removeprefix(API_PREFIX)
        self.requests.append(f"{path}?{request.url.query.decode()}")
        if self.missing:
            return httpx.Response(404, json={"detail": "Not Found"})
        routes: dict[str, Callable[[], Any]] = {
            "/history": lambda: history_body(_at(request, "since"), _at(request, "until"),
                                             Step(request.url.params["step"])),
            "/history/snapshot": lambda: snapshot_body(_at(request, "at")),
            "/payment-errors": lambda: errors_body(_at(request, "until")),
            "/report": lambda: report_body(_at(request, "since"), _at(request, "until")),
            f"/sessions/{ANN}": ann_journey,
        }
        if path == "/sessions":
            params = request.url.params
            if params.get("email") == "ann@example.com" or params.get("phone"):
                return self._dump(ann_sessions())
            return self._dump(SessionsOut(total=0, offset=0, limit=50, sessions=[]))
        if path.startswith("/sessions/") and path not in routes:
            session_id = path.rsplit("/", 1)[1]
            journey = ann_journey()
            journey.session = journey.session.model_copy(update={"session_id": session_id})
            return self._dump(journey)
        route = routes.get(path)
        if route is None:
            return httpx.Response(404, json={"detail": "Not Found"})
        return self._dump(route())

    def client(self, url: str = "http://127.0.0.1:8000", token: str = "test-token") -> HistoryApi:
        """The dashboard's HTTP client, answered from here."""
        return HistoryApi(url, token, transport=httpx.MockTransport(self.handle))
