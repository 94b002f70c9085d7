"""The live sessions on a page, fetched from ``GET /api/metrics/sessions`` (no Textual here)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from nilemetrics.protocol.lenient import lenient
from nilemetrics.protocol.names import API_PREFIX
from nilemetrics.protocol.pushed import PageSessionOut

#: Page types → the sessions on them (what the app calls; tests hand in their own).
SessionsFetcher = Callable[[list[str]], Awaitable["PageSessions"]]


class FetchError(Exception):
    """The sessions could not be fetched; the message says why, for the screen."""


@dataclass(frozen=True, slots=True)
class PageSession:
    """One live session on a page."""

    session_id: str
    page_type: str
    page_identifier: str
    entered_at: datetime | None
    seconds_on_page: float | None
    email: str
    previous_page: str

    @property
    def page_text(self) -> str:
        """``product · mug-42`` or ``homepage``."""
        return f"{self.page_type} · {self.page_identifier}" if self.page_identifier else (
            self.page_type)


@dataclass(frozen=True, slots=True)
class PageSessions:
    """The answer: how many live sessions there are, and the ones listed."""

    total: int
    sessions: list[PageSession]


def parse_page_sessions(data: Any) -> PageSessions:
    """Parse the endpoint's JSON with the contract's model, leniently (odd fields become empty)."""
    if not isinstance(data, dict) or not isinstance(data.get("sessions"), list):
        raise FetchError("the server's answer has no session list")
    sessions = []
    for item in data["sessions"]:
        if not isinstance(item, dict):
            continue
        found = lenient(PageSessionOut, item)
        previous = found.previous_page_type or ""
        if previous and found.previous_page_identifier:
            previous += f" · {found.previous_page_identifier}"
        entered = found.entered_at
        if entered is not None and entered.tzinfo is None:
            entered = entered.replace(tzinfo=UTC)
        sessions.append(PageSession(
            session_id=found.session_id,
            page_type=found.page_type,
            page_identifier=found.page_identifier or "",
            entered_at=entered,
            seconds_on_page=found.seconds_on_page,
            email=found.email or "",
            previous_page=previous,
        ))
    total = data.get("total")
    return PageSessions(total if isinstance(total, int) else len(sessions), sessions)


def sessions_url(server_url: str) -> str:
    """``http://host:port/api/metrics/sessions`` for a server address (or a ws:// URL)."""
    raw = server_url.strip()
    if "://" not in raw:
        raw = "http://" + raw
    parts = urlsplit(raw)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme.lower(), parts.scheme.lower())
    return urlunsplit((scheme, parts.netloc, f"{API_PREFIX}/sessions", "", ""))


def http_fetcher(server_url: str, token: str | None) -> SessionsFetcher:
    """A fetcher asking the server over HTTP with the dashboard token."""
    url = sessions_url(server_url)
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def fetch(page_types: list[str]) -> PageSessions:
        params = {"page": page_types, "live": "true"}
        try:
            async with httpx.AsyncClient(timeout=10.0) as client:
                response = await client.get(url, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise FetchError(f"could not reach the server ({exc.__class__.__name__})") from exc
        if response.status_code == 404:
            raise FetchError("this server does not list sessions (an older version)")
        if response.status_code != 200:
            raise FetchError(f"the server answered {response.status_code}: {response.text[:200]}")
        return parse_page_sessions(response.json())

    return fetch
