"""The server's history, journey and report endpoints, over HTTP (no Textual here).

The wire shapes are the contract's (``nilemetrics.protocol.history``,
``nilemetrics.protocol.pushed``), parsed leniently like pushed frames: an odd
field takes its default, an answer that is not the promised shape is an
:class:`ApiError` whose message the screens show.
"""

from __future__ import annotations

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
from nilemetrics.protocol.report import ReportOut
from nilemetrics.tui.model import ErrorRow, Metrics, parse_error_rows


class ApiError(Exception):
    """An answer the dashboard cannot use; the message says why, for the screen."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """The HTTP status when the server answered (``None``: no usable answer)."""


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


# --------------------------------------------------------------- the answers


def parse_time_text(value: str) -> datetime | None:
    """An aware datetime from the wire's ISO text (``Z`` allowed), or ``None``."""
    try:
        return _aware(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None


def parse_report(data: Any) -> ReportOut:
    """``GET /report``'s answer (the numbers ``nilemetrics report`` prints)."""
    if not isinstance(data, dict):
        raise ApiError("the server's report is not an object")
    return lenient(ReportOut, data)



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
        status = response.status_code
        if status == 404 and _detail(response) == "Not Found":
            # FastAPI's answer for a route it does not have.
            raise ApiError(f"this server has no {path} (an older version)", status)
        if status == 404:
            raise ApiError(_detail(response), status)
        if status in (401, 403):
            raise ApiError(f"the server refused the token (HTTP {status})", status)
        if status != 200:
            raise ApiError(f"the server answered {status}: {_detail(response)}", status)
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError("the server's answer is not JSON") from exc

    async def history(self, since: datetime, until: datetime, step: Step) -> HistoryOut:
        """Buckets of ``step`` from ``since`` to ``until``, oldest first."""
        return parse_history(await self._get("/history", {
            "since": wire_time(since), "until": wire_time(until), "step": step.value}))

    async def snapshot(self, at: datetime) -> Metrics:
        """The live numbers as they were at the start of the minute ``at``."""
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

    async def report(self, since: datetime, until: datetime) -> ReportOut:
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
