"""The server's history, journey and report endpoints, over HTTP (no Textual here).

The wire shapes are the contract's (``nilemetrics.protocol.history``,
``nilemetrics.protocol.pushed``), parsed leniently like pushed frames: an odd
field takes its default, an answer that is not the promised shape is an
:class:`ApiError` whose message the screens show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from nilemetrics.protocol.history import (
    HistoryOut,
    HistoryPoint,
    JourneyOut,
    SessionOut,
    SessionsOut,
    Step,
)
from nilemetrics.protocol.lenient import lenient
from nilemetrics.protocol.names import API_PREFIX, wire_time
from nilemetrics.tui.model import ErrorRow, Metrics, parse_error_rows


class ApiError(Exception):
    """An answer the dashboard cannot use; the message says why, for the screen."""


def api_base(server_url: str) -> str:
    """``http://host:port/api/metrics`` for a server address (or a ws:// URL)."""
    raw = server_url.strip()
    if "://" not in raw:
        raw = "http://" + raw
    parts = urlsplit(raw)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme.lower(), parts.scheme.lower())
    return urlunsplit((scheme, parts.netloc, API_PREFIX, "", ""))


def _aware(at: datetime | None) -> datetime | None:
    if at is None:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


# ------------------------------------------------------------------ the report


@dataclass(frozen=True, slots=True)
class PageTime:
    """Average time on one page type (or one category / offer)."""

    name: str
    visits: int
    avg_seconds: float


@dataclass(frozen=True, slots=True)
class FunnelStep:
    """One funnel step: sessions that got there, and the drop from the step before."""

    step: str
    sessions: int
    drop_off: int | None
    drop_off_rate: float | None
    conversion: float | None


@dataclass(frozen=True, slots=True)
class Abandonment:
    """A last page of sessions that started a checkout and never paid."""

    page: str
    sessions: int
    share: float | None


@dataclass(frozen=True, slots=True)
class ErrorCodeLine:
    """One payment error code over the period."""

    code: str
    errors: int
    checkouts: int
    amount_at_stake: str
    amount_recovered: str


@dataclass(frozen=True, slots=True)
class RetryLine:
    """Checkouts that failed N times, and how many of them paid in the end."""

    failures: int
    checkouts: int
    succeeded: int
    share_of_failed: float | None


@dataclass(frozen=True, slots=True)
class Report:
    """``GET /report``: the numbers ``nilemetrics report`` prints, for a period."""

    since: datetime | None
    until: datetime | None
    time_on_page: list[PageTime] = field(default_factory=list)
    by_category: list[PageTime] = field(default_factory=list)
    by_offer: list[PageTime] = field(default_factory=list)
    funnel: list[FunnelStep] = field(default_factory=list)
    abandonment: list[Abandonment] = field(default_factory=list)
    error_codes: list[ErrorCodeLine] = field(default_factory=list)
    failed_checkouts: int = 0
    succeeded_after_retry: int = 0
    succeeded_after_retry_rate: float | None = None
    retries: list[RetryLine] = field(default_factory=list)
    payment_success: dict[str, float | int | None] = field(default_factory=dict)


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _rate(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return _aware(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def _section(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def parse_report(data: Any) -> Report:
    """The report from its JSON (the keys of ``server/reports.py``), odd parts left empty."""
    if not isinstance(data, dict):
        raise ApiError("the server's report is not an object")
    pages = _section(data, "timeOnPage")

    def times(rows: Any, key: str) -> list[PageTime]:
        return [PageTime(str(row.get(key, "")), _int(row.get("visits")),
                         _rate(row.get("avgSeconds")) or 0.0) for row in _dicts(rows)]

    retries = _section(data, "retries")
    success = _section(data, "paymentSuccess")
    return Report(
        since=_time(data.get("since")),
        until=_time(data.get("until")),
        time_on_page=times(pages.get("byPageType"), "pageType"),
        by_category=times(pages.get("byCategory"), "identifier"),
        by_offer=times(pages.get("byOffer"), "identifier"),
        funnel=[
            FunnelStep(str(row.get("step", "")), _int(row.get("sessions")),
                       row["dropOff"] if isinstance(row.get("dropOff"), int) else None,
                       _rate(row.get("dropOffRate")), _rate(row.get("conversion")))
            for row in _dicts(data.get("funnel"))
        ],
        abandonment=[
            Abandonment(
                str(row.get("pageType", "")) + (f":{row['pageIdentifier']}"
                                                 if row.get("pageIdentifier") else ""),
                _int(row.get("sessions")), _rate(row.get("share")))
            for row in _dicts(data.get("abandonment"))
        ],
        error_codes=[
            ErrorCodeLine(str(row.get("errorCode", "")), _int(row.get("errors")),
                          _int(row.get("checkouts")), str(row.get("amountAtStake", "")),
                          str(row.get("amountRecovered", "")))
            for row in _dicts(data.get("paymentErrors"))
        ],
        failed_checkouts=_int(retries.get("failedCheckouts")),
        succeeded_after_retry=_int(retries.get("succeededAfterRetry")),
        succeeded_after_retry_rate=_rate(retries.get("succeededAfterRetryRate")),
        retries=[
            RetryLine(_int(row.get("failures")), _int(row.get("checkouts")),
                      _int(row.get("succeeded")), _rate(row.get("shareOfFailedCheckouts")))
            for row in _dicts(retries.get("byFailures"))
        ],
        payment_success={key: value for key, value in success.items()
                          if value is None or isinstance(value, int | float)},
    )


# --------------------------------------------------------------- the answers


def parse_history(data: Any) -> HistoryOut:
    """``GET /history``'s answer; each point parsed on its own (an odd one is skipped)."""
    if not isinstance(data, dict) or not isinstance(data.get("points"), list):
        raise ApiError("the server's history has no points")
    head = lenient(HistoryOut, {k: v for k, v in data.items() if k != "points"})
    points = [lenient(HistoryPoint, item) for item in data["points"] if isinstance(item, dict)]
    for point in points:
        point.at = _aware(point.at)
    return head.model_copy(update={"points": [p for p in points if p.at is not None]})


def parse_sessions(data: Any) -> SessionsOut:
    """A session lookup's answer, newest first."""
    if not isinstance(data, dict) or not isinstance(data.get("sessions"), list):
        raise ApiError("the server's answer has no session list")
    head = lenient(SessionsOut, {k: v for k, v in data.items() if k != "sessions"})
    sessions = [lenient(SessionOut, item) for item in data["sessions"] if isinstance(item, dict)]
    return head.model_copy(update={"sessions": sessions})


def parse_journey(data: Any) -> JourneyOut:
    """A journey (``GET /sessions/{id}``)."""
    if not isinstance(data, dict):
        raise ApiError("the server's journey is not an object")
    return lenient(JourneyOut, data)


class HistoryApi:
    """Asks the server for history, snapshots, error rows, sessions, journeys and reports.

    ``transport`` is httpx's (tests hand in one answering from recorded bodies);
    by default it is the network.
    """

    def __init__(self, server_url: str, token: str | None, *,
                 transport: httpx.AsyncBaseTransport | None = None,
                 timeout: float = 10.0) -> None:
        self.base = api_base(server_url)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._transport = transport
        self._timeout = timeout

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        try:
            async with httpx.AsyncClient(transport=self._transport, timeout=self._timeout,
                                         headers=self._headers) as client:
                response = await client.get(self.base + path, params=params)
        except httpx.HTTPError as exc:
            raise ApiError(f"could not reach the server ({exc.__class__.__name__})") from exc
        if response.status_code == 404 and path.startswith("/sessions/"):
            raise ApiError("no such session (it may have been forgotten)")
        if response.status_code == 404:
            raise ApiError(f"this server has no {path.split('?')[0]} (an older version)")
        if response.status_code in (401, 403):
            raise ApiError(f"the server refused the token (HTTP {response.status_code})")
        if response.status_code != 200:
            raise ApiError(f"the server answered {response.status_code}: {_detail(response)}")
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError("the server's answer is not JSON") from exc

    async def history(self, since: datetime, until: datetime, step: Step) -> HistoryOut:
        """Buckets of ``step`` from ``since`` to ``until``, oldest first."""
        return parse_history(await self._get("/history", {
            "since": wire_time(since), "until": wire_time(until), "step": step.value}))

    async def snapshot(self, at: datetime) -> Metrics:
        """The live numbers as they were at the minute ``at``."""
        data = await self._get("/history/snapshot", {"at": wire_time(at)})
        return Metrics.from_data(data) if isinstance(data, dict) else _no_object()

    async def payment_errors(self, until: datetime, since: datetime | None = None,
                             limit: int = 50) -> list[ErrorRow]:
        """Payment-error rows up to ``until`` (the hour before it by default), newest first."""
        params: dict[str, Any] = {"until": wire_time(until), "limit": limit}
        if since is not None:
            params["since"] = wire_time(since)
        data = await self._get("/payment-errors", params)
        if not isinstance(data, list):
            raise ApiError("the server's payment errors are not a list")
        rows, _unusable = parse_error_rows(data)
        return rows

    async def sessions(self, *, email: str | None = None, phone: str | None = None,
                       user_id: str | None = None) -> SessionsOut:
        """A person's sessions, newest first."""
        params = {key: value for key, value in (("email", email), ("phone", phone),
                                                ("userId", user_id)) if value}
        return parse_sessions(await self._get("/sessions", params))

    async def journey(self, session_id: str) -> JourneyOut:
        """What one session did, in order."""
        return parse_journey(await self._get(f"/sessions/{session_id}"))

    async def report(self, since: datetime, until: datetime) -> Report:
        """The session analytics of a period."""
        return parse_report(await self._get(
            "/report", {"since": wire_time(since), "until": wire_time(until)}))


def _no_object() -> Metrics:
    raise ApiError("the server's snapshot is not an object")


def _detail(response: httpx.Response) -> str:
    """The ``detail`` of a FastAPI error (what was wrong), else the body's start."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            return str(detail[0].get("msg", detail[0]))
        return str(detail)
    return response.text[:200]
