"""ASGI middleware for the ingestion API's bodies, with the single-event fast path."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

_JSON = b"application/json"
#: Origins warned about once each; beyond this many, no more warnings (no unbounded set).
_MAX_WARNED_ORIGINS = 64

#: Handles one request whose whole body has been read; False declines it (the body
#: is then replayed to the application, which answers as it always has).
FastHandler = Callable[[Scope, bytes, Send], Awaitable[bool]]


class IngestBodyMiddleware:
    """Cap request bodies and read ingestion bodies as JSON whatever their content type.

    ``navigator.sendBeacon`` sends a string as ``text/plain`` and a Blob with the
    Blob's type (possibly none); the body is JSON either way. Bodies over the cap
    get a 413 and never reach a handler. The common case (a JSON body with a
    Content-Length under the cap) passes straight through.

    ``fast`` maps exact paths (POST) to handlers that answer valid bodies without
    the router and FastAPI's body handling, which cost the event loop more than
    a group commit costs per event. A handler declines what it does not accept
    (invalid bodies), and the application then answers exactly as before.

    ``allowed_origins`` (the CORS list): an ingestion request from another origin
    is still stored, as CORS cannot stop a simple request, but the browser hides the
    answer from the page, so a tracker retries forever. That is a set-up mistake
    an operator needs to hear about: it is logged once per origin.

    ``busy``: a POST to one of ``busy_paths`` from a client for which ``busy(scope)``
    holds (its share of the writer's queue is full) gets 429 with ``busy_detail``
    at once, before its body is read: a flooder refused again and again then
    costs the event loop next to nothing, instead of a 500-event parse each time.

    ``cors``: the application's CORS middleware, when this one sits outside it (the
    server's front door, see ``server.app.TrackingServer``): the answers given here
    (fast path, 413, 429) then get the headers it would have added (:class:`CorsHeaders`).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        prefix: str,
        max_bytes: int,
        fast: Mapping[str, FastHandler] | None = None,
        allowed_origins: Collection[str] | None = None,
        busy: Callable[[Scope], bool] | None = None,
        busy_paths: Collection[str] = (),
        busy_detail: str = "",
        refused: Callable[[str], None] | None = None,
        cors: CORSMiddleware | None = None,
    ) -> None:
        self.app = app
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.fast = dict(fast or {})
        self.allowed: frozenset[bytes] | None = (
            None if allowed_origins is None or "*" in allowed_origins
            else frozenset(o.encode("latin-1") for o in allowed_origins)
        )
        self.warned: set[bytes] = set()
        self.busy = busy
        self.busy_paths = frozenset(busy_paths)
        self.busy_body = json.dumps({"detail": busy_detail}).encode()
        #: Told of each request refused here (413, 429), with its reason (metrics).
        self.refused = refused
        self.cors = CorsHeaders(cors) if cors is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH", "DELETE"):
            await self.app(scope, receive, send)
            return
        content_type = b""
        declared: int | None = None
        origin: bytes | None = None
        for key, value in scope["headers"]:
            if key == b"content-type":
                content_type = value
            elif key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
            elif key == b"origin":
                origin = value
        cors = self.cors
        app_send = send
        if cors is not None:
            send = cors.wrap(send, origin)
        if declared is not None and declared > self.max_bytes:
            await self._reject(send)
            return
        path = scope["path"]
        if origin is not None and self.allowed is not None and origin not in self.allowed:
            self._warn_origin(origin, path)
        if path.startswith(self.prefix) and not content_type.startswith(_JSON):
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            headers.append((b"content-type", _JSON))
            scope = {**scope, "headers": headers}
        if (
            self.busy is not None and path in self.busy_paths and scope["method"] == "POST"
            and self.busy(scope)
        ):
            await self._busy(send)
            return
        handler = self.fast.get(path) if scope["method"] == "POST" else None
        if declared is not None and handler is None:
            # The server enforces Content-Length, so the body cannot exceed it.
            await self.app(scope, receive, app_send)
            return
        await self._counted(scope, receive, send, handler, app_send)

    def _warn_origin(self, origin: bytes, path: str) -> None:
        if (
            origin in self.warned
            or len(self.warned) >= _MAX_WARNED_ORIGINS
            or not path.startswith(self.prefix)
        ):
            return
        self.warned.add(origin)
        text = origin.decode("latin-1")[:200]
        log.warning(
            "ingestion request from origin %s, which is not an allowed origin: its events "
            "are stored, but the browser hides the answers from the page (the tracker "
            "keeps retrying). Add it with --allowed-origin or NILEMETRICS_ALLOWED_ORIGINS.",
            text,
        )

    async def _counted(
        self, scope: Scope, receive: Receive, send: Send, handler: FastHandler | None,
        app_send: Send,
    ) -> None:
        """Read the body (up to the cap), offer it to ``handler``, else replay it to the app.

        ``send`` answers from here, ``app_send`` is what the application is given.
        """
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._reject(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if handler is not None and await handler(scope, body, send):
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, app_send)

    async def _busy(self, send: Send) -> None:
        if self.refused is not None:
            self.refused("client_over_share")
        # The unread body is skipped by the server; the connection stays usable.
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(self.busy_body)).encode()),
                    (b"retry-after", b"1"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": self.busy_body})

    async def _reject(self, send: Send) -> None:
        if self.refused is not None:
            self.refused("too_large")
        payload = json.dumps(
            {"detail": f"request body too large: the limit is {self.max_bytes} bytes"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


class CorsHeaders:
    """The headers a CORS middleware adds to a simple (non-preflight) answer, per origin.

    For answers given outside the middleware. The same decisions as Starlette's
    ``CORSMiddleware.send`` (a test compares the two for each kind of origin), made
    once per origin value and kept for the shop's few origins.
    """

    #: Most origins whose headers are kept (any others are worked out per answer).
    MAX_KEPT = 64

    def __init__(self, cors: CORSMiddleware) -> None:
        self._cors = cors
        self._kept: dict[bytes | None, list[tuple[bytes, bytes]]] = {}

    def headers(self, origin: bytes | None) -> list[tuple[bytes, bytes]]:
        """What an answer to a request with this ``Origin`` (None: none) gets added."""
        found = self._kept.get(origin)
        if found is None:
            found = self._work_out(None if origin is None else origin.decode("latin-1"))
            if len(self._kept) < self.MAX_KEPT:
                self._kept[origin] = found
        return found

    def _work_out(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        cors = self._cors
        message: Message = {"type": "http.response.start", "headers": []}
        headers = MutableHeaders(scope=message)
        # As CORSMiddleware.send does it (starlette 1.x).
        if origin is not None:
            headers.update(cors.simple_headers)
        if origin is not None and (
            (cors.allow_all_origins and cors.allow_credentials)
            or (not cors.allow_all_origins and cors.is_allowed_origin(origin=origin))
        ):
            cors.allow_explicit_origin(headers, origin)
        else:
            headers["Vary"] = ", ".join([*headers.getlist("Vary"), "Origin"])
        return list(message["headers"])

    def wrap(self, send: Send, origin: bytes | None) -> Send:
        """``send`` adding this origin's headers to the answer's start."""
        extra = self.headers(origin)

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        return send_with_cors


#: Scope key of a function that drops a WebSocket's connection at once (or None).
ABORT_KEY = "nilemetrics.abort"


class ConnectionAbortMiddleware:
    """Give WebSocket handlers a way to drop their connection without flushing it.

    ASGI can only close a WebSocket politely, and a close frame queues behind
    everything unsent: to a client that stopped reading, it never goes out and
    the connection stays open for good. The server's transport can drop it.
    uvicorn's ``send`` is a method of its protocol object, which holds the
    transport; any other server gets ``None`` (and keeps the polite close).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            scope[ABORT_KEY] = _transport_abort(send)
        await self.app(scope, receive, send)


def _transport_abort(send: Send) -> Callable[[], None] | None:
    transport: Any = getattr(getattr(send, "__self__", None), "transport", None)
    abort = getattr(transport, "abort", None)
    return abort if callable(abort) else None
