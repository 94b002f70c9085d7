"""The WebSocket feed: parsing, URLs, backoff, auth refusal, against a real server too."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus
from websockets.http11 import Response

from nilemetrics.tui.feed import (
    AuthRefused,
    BadFrame,
    Connected,
    Connecting,
    Disconnected,
    FeedEvent,
    Frame,
    WebSocketFeed,
    parse_frame,
    websocket_url,
)
from tests.support import LiveServer, free_port

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_websocket_url_from_server_address() -> None:
    """http becomes ws, https wss, and the metrics path is added once."""
    assert websocket_url("http://127.0.0.1:8000") == "ws://127.0.0.1:8000/api/metrics/ws"
    assert websocket_url("https://metrics.shop/") == "wss://metrics.shop/api/metrics/ws"
    assert websocket_url("127.0.0.1:8000") == "ws://127.0.0.1:8000/api/metrics/ws"
    assert websocket_url("ws://h:1/api/metrics/ws") == "ws://h:1/api/metrics/ws"
    with pytest.raises(ValueError, match="unsupported URL scheme 'ftp'"):
        websocket_url("ftp://h")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"event":"metrics-update","data":{"homepage":1}}',
         Frame("metrics-update", {"homepage": 1})),
        ('{"event":"x","data":null}', Frame("x", None)),
        ("not json", BadFrame("not JSON (JSONDecodeError)")),
        ("[1,2]", BadFrame("not a JSON object")),
        ('{"data":1}', BadFrame("no event name")),
        ('{"event":"metrics-update"}', BadFrame("metrics-update: no data")),
    ],
)
def test_parse_frame(text: str, expected: FeedEvent) -> None:
    """Well-formed frames parse; anything else says what is wrong with it."""
    assert parse_frame(text) == expected


class _Sleeps:
    """Records the delays the feed waits instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


async def _take(feed: AsyncIterator[FeedEvent], n: int) -> list[FeedEvent]:
    events: list[FeedEvent] = []
    async with contextlib.aclosing(feed) as stream:  # type: ignore[type-var]
        async for event in stream:
            events.append(event)
            if len(events) == n:
                break
    return events


async def test_unreachable_server_backs_off_exponentially_with_a_cap() -> None:
    """Nothing listening: 'unreachable', and delays 1, 2, 4, 8, 8 (capped)."""
    sleeps = _Sleeps()
    feed = WebSocketFeed(f"http://127.0.0.1:{free_port()}", "t", max_delay=8, sleep=sleeps)
    events = await _take(aiter(feed), 10)
    drops = [e for e in events if isinstance(e, Disconnected)]
    assert all(d.unreachable for d in drops)
    assert drops[0].reason == "connection refused"
    assert [d.retry_in for d in drops] == [1, 2, 4, 8, 8]
    assert sleeps.delays == [1, 2, 4, 8]
    assert [e.attempt for e in events if isinstance(e, Connecting)] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("status", [401, 403])
async def test_http_auth_refusal_ends_the_feed(status: int) -> None:
    """HTTP 401/403 at the handshake is an auth refusal, never retried."""

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise InvalidStatus(Response(status, "Forbidden", Headers()))

    feed = WebSocketFeed("http://127.0.0.1:9", "t", connect_fn=refuse, sleep=_Sleeps())
    events = [event async for event in feed]
    assert events == [Connecting(1), AuthRefused(f"the server refused the token (HTTP {status})")]


async def test_other_http_answers_are_retried() -> None:
    """An HTTP 503 at the handshake is a temporary problem: retry."""

    def busy(*_args: Any, **_kwargs: Any) -> Any:
        raise InvalidStatus(Response(503, "Unavailable", Headers()))

    feed = WebSocketFeed("http://127.0.0.1:9", "t", connect_fn=busy, sleep=_Sleeps())
    events = await _take(aiter(feed), 2)
    assert events[1] == Disconnected("the server answered HTTP 503", 1.0, False)


@SQLITE_ONLY
async def test_wrong_token_is_refused_by_the_real_server(server: LiveServer) -> None:
    """A wrong token gets close code 1008: AuthRefused, then the feed ends."""
    feed = WebSocketFeed(server.base_url, "wrong-token", sleep=_Sleeps())
    events = await asyncio.wait_for(_collect(feed), 10)
    assert events[0] == Connecting(1)
    assert isinstance(events[1], AuthRefused)
    assert "invalid or missing token" in events[1].reason
    assert len(events) == 2


async def _collect(feed: WebSocketFeed) -> list[FeedEvent]:
    return [event async for event in feed]


@SQLITE_ONLY
async def test_right_token_gets_the_snapshot_at_once(server: LiveServer) -> None:
    """With the token: connected, then metrics-update and payment-errors-update."""
    feed = WebSocketFeed(server.base_url, server.token)
    events = await asyncio.wait_for(_take(aiter(feed), 4), 10)
    assert events[:2] == [Connecting(1), Connected()]
    names = {e.event for e in events[2:] if isinstance(e, Frame)}
    assert names == {"metrics-update", "payment-errors-update"}
