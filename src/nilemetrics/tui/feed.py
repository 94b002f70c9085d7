"""The dashboard's WebSocket feed: a plain async iterator of parsed frames and connection states.

No Textual imports here, so tests can hand the app a recorded feed instead.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)

from nilemetrics.protocol import WS_CLOSE_UNAUTHORIZED, WS_PATH

#: Frames as large as a 1,000-row error table must fit (the default is 1 MiB).
MAX_FRAME_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Connecting:
    """A connection attempt has started."""

    attempt: int


@dataclass(frozen=True, slots=True)
class Connected:
    """The server accepted the subscription."""


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection failed or dropped; the feed retries after ``retry_in`` seconds.

    ``unreachable`` is true when no connection could be opened at all.
    """

    reason: str
    retry_in: float
    unreachable: bool


@dataclass(frozen=True, slots=True)
class AuthRefused:
    """The server refused the token; the feed ends (retrying cannot help)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Frame:
    """One well-formed ``{"event": NAME, "data": …}`` frame (the event may be unknown)."""

    event: str
    data: Any


@dataclass(frozen=True, slots=True)
class BadFrame:
    """A frame that is not ``{"event": str, "data": …}`` JSON; it is skipped."""

    reason: str


FeedEvent = Connecting | Connected | Disconnected | AuthRefused | Frame | BadFrame
"""Everything a feed yields."""

Feed = AsyncIterator[FeedEvent]
FeedFactory = Callable[[], Feed]
"""Builds a fresh feed; the app calls it once when it starts."""


def websocket_url(server_url: str) -> str:
    """The WebSocket URL for a server address (``http://host:port`` or a ``ws://`` URL)."""
    raw = server_url.strip()
    if "://" not in raw:
        raw = "http://" + raw
    parts = urlsplit(raw)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme.lower())
    if scheme is None:
        raise ValueError(f"unsupported URL scheme {parts.scheme!r} (use http:// or https://)")
    if not parts.netloc:
        raise ValueError(f"no host in {server_url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith(WS_PATH):
        path += WS_PATH
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def parse_frame(text: str | bytes) -> Frame | BadFrame:
    """Decode one WebSocket message into a :class:`Frame`, or say why it is not one."""
    try:
        message = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        return BadFrame(f"not JSON ({exc.__class__.__name__})")
    if not isinstance(message, dict):
        return BadFrame("not a JSON object")
    event = message.get("event")
    if not isinstance(event, str) or not event:
        return BadFrame("no event name")
    if "data" not in message:
        return BadFrame(f"{event}: no data")
    return Frame(event, message["data"])


Connect = Callable[..., Any]
Sleep = Callable[[float], Awaitable[None]]


class WebSocketFeed:
    """Subscribe to the server's metrics WebSocket, reconnecting with capped backoff.

    Iterating yields :data:`FeedEvent` values forever, except after an auth
    refusal (close code 1008, or HTTP 401/403 at the handshake), where it ends.
    """

    def __init__(
        self,
        server_url: str,
        token: str | None,
        *,
        initial_delay: float = 1.0,
        max_delay: float = 30.0,
        open_timeout: float = 10.0,
        connect_fn: Connect = connect,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.url = websocket_url(server_url)
        self._token = token
        self._initial_delay = initial_delay
        self._max_delay = max_delay
        self._open_timeout = open_timeout
        self._connect = connect_fn
        self._sleep = sleep

    def __aiter__(self) -> Feed:
        return self._run()

    def _headers(self) -> dict[str, str]:
        # A header rather than ?token=: query strings end up in access logs.
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    async def _run(self) -> Feed:
        delay = self._initial_delay
        attempt = 0
        while True:
            attempt += 1
            yield Connecting(attempt)
            got_frame = False
            unreachable = True
            try:
                async with self._connect(
                    self.url,
                    additional_headers=self._headers(),
                    open_timeout=self._open_timeout,
                    max_size=MAX_FRAME_BYTES,
                    proxy=None,
                ) as ws:
                    unreachable = False
                    async for event in self._frames(ws):
                        if not got_frame:
                            got_frame = True
                            delay = self._initial_delay
                            yield Connected()
                        yield event
                    code = ws.close_code
                    reason = ws.close_reason or ""
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403):
                    yield AuthRefused(f"the server refused the token (HTTP {status})")
                    return
                code, reason = None, f"the server answered HTTP {status}"
                unreachable = False
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                reason = (exc.rcvd.reason if exc.rcvd is not None else "") or "connection lost"
            except InvalidURI as exc:
                yield Disconnected(f"invalid address: {exc}", self._max_delay, True)
                await self._sleep(self._max_delay)
                continue
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                code, reason = None, _describe(exc)
            if code == WS_CLOSE_UNAUTHORIZED:
                yield AuthRefused(f"the server refused the token ({reason or 'close 1008'})")
                return
            if not reason:
                reason = "connection closed" if code is None else f"connection closed ({code})"
            yield Disconnected(reason, delay, unreachable)
            await self._sleep(delay)
            delay = min(delay * 2, self._max_delay)

    async def _frames(self, ws: ClientConnection) -> AsyncIterator[Frame | BadFrame]:
        while True:
            try:
                text = await ws.recv()
            except ConnectionClosed:
                return
            yield parse_frame(text)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or exc.__class__.__name__
