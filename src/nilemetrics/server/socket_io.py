"""Socket.IO at ``/socket.io``: the WebSocket's live frames for the shop's seller dashboard.

The shop's existing seller dashboard (React, socket.io-client) listens for
``metrics-update``, ``payment-errors-update`` and ``metrics-heartbeat`` and emits
``join-seller-dashboard``. Each Socket.IO client is a hub subscriber like a
WebSocket one: it gets the snapshot at once, then the same frames with the same
bodies, coalesced the same way. It needs a dashboard token, as the WebSocket does:
``auth: {token}``, ``?token=`` or an ``Authorization: Bearer`` header.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import socketio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nilemetrics.protocol.names import WsEvent
from nilemetrics.server.auth import token_matches
from nilemetrics.server.hub import Frame, Hub, Subscriber

log = logging.getLogger(__name__)

#: The answer to a connection without a valid token (the client's ``connect_error``).
REFUSED = "invalid or missing token"
#: The answer when the live numbers cannot be read (database down at start).
UNAVAILABLE = "live numbers unavailable, retry later"
#: How often a sender waiting on a client that does not read checks it is still there.
_GONE_CHECK_SECONDS = 5.0
#: Longest seller id kept (as the WebSocket does).
_MAX_SELLER_ID = 255


@dataclass
class _Client:
    sub: Subscriber
    pump: asyncio.Task[None]
    #: The seller whose room it joined (one server serves one shop: the same frames).
    seller_id: str | None = None


class SocketIOEndpoint:
    """The Socket.IO server and its clients' hub subscriptions.

    ``live`` returns the hub and the accepted tokens of the running server (they
    exist only once the app's lifespan has started).
    """

    def __init__(
        self,
        *,
        allowed_origins: list[str],
        live: Callable[[], tuple[Hub, list[str]]],
    ) -> None:
        self._live = live
        self._clients: dict[str, _Client] = {}
        self.server: Any = socketio.AsyncServer(
            async_mode="asgi",
            cors_allowed_origins=_engineio_origins(allowed_origins),
            logger=False,
            engineio_logger=False,
        )
        self.server.on("connect", self._connect)
        self.server.on("disconnect", self._disconnect)
        self.server.on(WsEvent.JOIN_SELLER_DASHBOARD.value, self._join)

    def asgi_app(self) -> ASGIApp:
        """The ASGI app to mount at ``SOCKETIO_PATH`` (it answers every path below it)."""
        return _lowercase_header_names(socketio.ASGIApp(self.server, socketio_path=None))

    @property
    def clients(self) -> int:
        """How many authenticated Socket.IO clients are connected."""
        return len(self._clients)

    async def close(self) -> None:
        """Stop every client's pump and the server's background tasks (at shutdown)."""
        for client in list(self._clients.values()):
            client.pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await client.pump
        self._clients.clear()
        with contextlib.suppress(Exception):
            await self.server.shutdown()

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        hub, tokens = self._live()
        if not token_matches(_token(environ, auth), tokens):
            raise socketio.exceptions.ConnectionRefusedError(REFUSED)

        async def send(item: Frame) -> None:
            await self.server.emit(item.event, item.data, to=sid)
            await self._flushed(sid)

        try:
            sub = await hub.subscribe(send)
        except Exception as exc:  # the first snapshot could not be read
            log.warning("Socket.IO client refused: no live numbers (%s)", exc)
            raise socketio.exceptions.ConnectionRefusedError(UNAVAILABLE) from exc
        # The pump starts after this handler returns, so after python-socketio has
        # queued the CONNECT answer: the snapshot never overtakes it.
        pump = asyncio.get_running_loop().create_task(self._pump(sid, sub), name=f"nm-sio-{sid}")
        self._clients[sid] = _Client(sub, pump)

    async def _disconnect(self, sid: str, reason: Any = None) -> None:
        client = self._clients.get(sid)
        if client is not None:
            client.pump.cancel()
            self._forget(sid, client.sub)

    async def _pump(self, sid: str, sub: Subscriber) -> None:
        try:
            await sub.pump()  # ends when sending fails: the client is gone
        except Exception as exc:
            log.debug("Socket.IO client %s: pump ended (%s)", sid, exc)
        finally:
            self._forget(sid, sub)

    def _forget(self, sid: str, sub: Subscriber) -> None:
        hub, _tokens = self._live()
        hub.unsubscribe(sub)
        client = self._clients.get(sid)
        if client is not None and client.sub is sub:
            del self._clients[sid]

    async def _join(self, sid: str, data: Any = None) -> dict[str, Any]:
        """``join-seller-dashboard``: put the client in its seller's room (acknowledged)."""
        client = self._clients.get(sid)
        if client is None:
            return {"error": "not connected"}
        if not isinstance(data, str | int) or isinstance(data, bool) or str(data) == "":
            return {"error": "a seller id (string or number) is required"}
        seller_id = str(data)[:_MAX_SELLER_ID]
        if client.seller_id is not None:
            await self.server.leave_room(sid, _room(client.seller_id))
        client.seller_id = seller_id
        await self.server.enter_room(sid, _room(seller_id))
        return {"sellerId": seller_id}

    async def _flushed(self, sid: str) -> None:
        """Wait until Engine.IO handed this client's queued packets to its transport.

        ``emit`` only appends to the Engine.IO socket's queue, which has no bound: a
        client that reads slowly (or a polling client that stops polling) would
        collect every frame there. Waiting here keeps at most one frame in flight,
        so the hub's one-slot mailbox does the coalescing, as for a WebSocket.
        Raises ``ConnectionError`` once the client is gone, which ends its pump even
        if no disconnect handler ran (a client that left during its connect).
        """
        while True:
            eio_sid = self.server.manager.eio_sid_from_sid(sid, "/")
            eio_socket = self.server.eio.sockets.get(eio_sid) if eio_sid else None
            if eio_socket is None or getattr(eio_socket, "closed", False):
                raise ConnectionError(f"Socket.IO client {sid} is gone")
            queue = getattr(eio_socket, "queue", None)
            if not isinstance(queue, asyncio.Queue):
                return
            try:
                async with asyncio.timeout(_GONE_CHECK_SECONDS):  # see Hub._run
                    await queue.join()
                return
            except TimeoutError:
                continue  # still there, still not reading: look again


def _lowercase_header_names(app: ASGIApp) -> ASGIApp:
    """``app`` with its response header names in lower case.

    Engine.IO writes ``Access-Control-Allow-Origin`` capitalised; the CORS middleware
    outside matches names in lower case, so it added a second one instead of
    replacing it, and browsers refuse an answer with two (the polling transport
    then fails from the shop's origin).
    """

    async def lowered(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_lowered(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(name.lower(), value) for name, value in message.get("headers", ())]
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, send_lowered)

    return lowered


def _room(seller_id: str) -> str:
    return f"seller:{seller_id}"


def _engineio_origins(allowed: list[str]) -> str | list[str] | None:
    """The API's CORS origins in Engine.IO's terms.

    Engine.IO reads ``[]`` as "no origin check at all"; the API's empty list means
    "no cross-origin caller", which is Engine.IO's ``None`` (same origin only).
    """
    if "*" in allowed:
        return "*"
    return list(allowed) or None


def _token(environ: dict[str, Any], auth: Any) -> str | None:
    """The token from ``auth: {token}``, else ``?token=``, else a bearer header."""
    if isinstance(auth, dict):
        given = auth.get("token")
        if isinstance(given, str) and given:
            return given
    query = parse_qs(str(environ.get("QUERY_STRING", "")))
    if query.get("token"):
        return query["token"][0]
    scheme, _, credentials = str(environ.get("HTTP_AUTHORIZATION", "")).partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None
