"""Connection limits for ``nilemetrics serve``: slow and oversized requests, too many clients.

uvicorn (0.54) bounds the time between requests on a kept-alive connection, but
not the time a client takes to send a request: a connection that sends nothing,
or a header a byte at a time, is held forever (slowloris), and with the
httptools parser the headers' size is not bounded either. :class:`GuardedHttpProtocol`
is uvicorn's httptools protocol with three additions:

- a request must arrive whole (headers and body) within ``request_timeout`` of
  its first byte, and the first request within ``request_timeout`` of connecting;
  otherwise 408 and the connection is closed;
- a request's line and headers may take ``max_header_bytes``; beyond that, 431
  and the connection is closed (nothing more of them is kept);
- at ``max_connections`` open connections, a new one closes the oldest connection
  that is not in the middle of a request (idle, or still sending its headers),
  and if every one is busy it gets 503 at once itself. Descriptors stay free for
  the database, a client that sends its request at once is served even while
  slow clients fill the server, and nothing waits in a hang.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from nilemetrics.config import Settings

#: Seconds a refused connection is kept reading (and discarding) before it is closed.
_LINGER = 1.0

_STATUS = {
    408: b"408 Request Timeout",
    431: b"431 Request Header Fields Too Large",
    503: b"503 Service Unavailable",
}


#: Per server: its connections not in the middle of a request, oldest first.
_WAITING: weakref.WeakKeyDictionary[ServerState, dict[GuardedHttpProtocol, None]] = (
    weakref.WeakKeyDictionary()
)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a request timeout, a header cap and a connection cap."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        request_timeout: float,
        max_header_bytes: int,
        max_connections: int,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._request_timeout = request_timeout
        self._max_header_bytes = max_header_bytes
        self._max_connections = max_connections
        self._request_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._refused = False
        self._waiting = _WAITING.setdefault(server_state, {})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self._max_connections and not self._evict_one():
            self._refuse(503, b"too many connections; retry later")
            self.connections.discard(self)  # while it lingers, it takes no one's place
            return
        self._waiting[self] = None
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._waiting.pop(self, None)
        super().connection_lost(exc)

    def _evict_one(self) -> bool:
        """Close the oldest connection not in the middle of a request, if there is one."""
        other = next(iter(self._waiting), None)
        if other is None:
            return False
        del self._waiting[other]
        other._refused = True
        other._disarm()
        # No lingering: its descriptor is what the new connection needs. It stops
        # counting now, not when the loop reports it lost.
        other.transport.close()
        self.connections.discard(other)
        return True

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)

    def handle_websocket_upgrade(self) -> None:
        self._disarm()  # the WebSocket protocol has its own ping timeout
        self._waiting.pop(self, None)
        super().handle_websocket_upgrade()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        if self._request_timer is None:
            self._arm()

    def on_url(self, url: bytes) -> None:
        if self._count(len(url)):
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._count(len(name) + len(value) + 4):
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._waiting.pop(self, None)
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self._refused and not self.transport.is_closing():
            self._waiting[self] = None  # idle between requests: may be evicted

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _count(self, size: int) -> bool:
        if self._refused:
            return False
        self._header_bytes += size
        if self._header_bytes > self._max_header_bytes:
            self._refuse(431, b"request headers too large")
            return False
        return True

    def _arm(self) -> None:
        self._disarm()
        self._request_timer = self.loop.call_later(self._request_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _timed_out(self) -> None:
        self._request_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self._refuse(408, b"request not received in time")
        else:
            # Headers came, the body did not: the application sees a disconnect.
            self.transport.close()

    def _refuse(self, status: int, text: bytes) -> None:
        self._refused = True
        self._disarm()
        if self.transport.is_closing():
            return
        self.transport.write(
            b"HTTP/1.1 " + _STATUS[status] + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(text)).encode() + b"\r\nconnection: close\r\n"
            + (b"retry-after: 1\r\n" if status == 503 else b"") + b"\r\n" + text
        )
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        # A lingering close: closing with unread input makes the kernel send a reset,
        # which can destroy the answer before the client reads it. Send the answer and
        # our end of the stream, discard what still comes (data_received), and close
        # when the client does or after a moment.
        self.transport.write_eof()
        self.loop.call_later(_LINGER, self._close)

    def _close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()


def uvicorn_limits(settings: Settings) -> dict[str, Any]:
    """``uvicorn.Config`` arguments that bound slow, oversized and too many connections."""
    protocol = functools.partial(
        GuardedHttpProtocol,
        request_timeout=settings.http_request_timeout,
        max_header_bytes=settings.http_max_header_bytes,
        max_connections=settings.http_max_connections,
    )
    return {
        "http": protocol,
        "timeout_keep_alive": settings.http_keep_alive_timeout,
        # uvicorn's own cap (503 for a request once connections or running requests
        # reach it) as a backstop: it counts the connection asking, which the
        # protocol above has already let in, so one more.
        "limit_concurrency": settings.http_max_connections + 1,
        "h11_max_incomplete_event_size": settings.http_max_header_bytes,
    }
