"""The dashboard WebSocket: ``{"event": NAME, "data": …}`` frames."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from nilemetrics.protocol.frames import CLIENT_EVENTS
from nilemetrics.protocol.names import API_PREFIX, WS_CLOSE_UNAUTHORIZED, WsEvent
from nilemetrics.protocol.pushed import Notice
from nilemetrics.server.auth import bearer_token, token_matches
from nilemetrics.server.hub import Frame, Subscriber
from nilemetrics.server.middleware import ABORT_KEY
from nilemetrics.server.state import get_state

log = logging.getLogger(__name__)

router = APIRouter(prefix=API_PREFIX)


@router.websocket("/ws")
async def metrics_socket(websocket: WebSocket) -> None:
    """Live metrics: a snapshot at once, then coalesced updates (token required)."""
    state = get_state(websocket)
    token = websocket.query_params.get("token") or bearer_token(websocket)
    await websocket.accept()
    if not token_matches(token, state.tokens):
        # Accept first so the client sees the close code, not a bare HTTP 403.
        await websocket.close(code=WS_CLOSE_UNAUTHORIZED, reason="invalid or missing token")
        return

    async def send(item: Frame) -> None:
        await websocket.send_text(item.text)

    sub = await state.hub.subscribe(send)
    pump = asyncio.create_task(sub.pump())
    try:
        while True:
            receive = asyncio.create_task(websocket.receive_text())
            done, _ = await asyncio.wait({receive, pump}, return_when=asyncio.FIRST_COMPLETED)
            if pump in done:
                receive.cancel()
                if isinstance(pump.exception(), TimeoutError):
                    _abort(websocket)  # it stopped reading: a close would never go out
                break  # sending failed: the client is gone
            raw = receive.result()
            _handle_client_frame(sub, raw)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        state.hub.unsubscribe(sub)
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump


def _abort(websocket: WebSocket) -> None:
    abort = websocket.scope.get(ABORT_KEY)
    log.info("dropping a WebSocket client that stopped reading")
    if abort is not None:
        abort()


def _handle_client_frame(sub: Subscriber, raw: str) -> None:
    try:
        message = json.loads(raw)
        event = message.get("event") if isinstance(message, dict) else None
    except ValueError:
        event = None
        message = None
    if event in CLIENT_EVENTS:
        # join-seller-dashboard: one server serves one shop, every subscriber gets
        # the same frames; the shop's dashboard sends it, so it is accepted.
        return
    sub.offer(Frame(WsEvent.ERROR, Notice(message="unknown or malformed frame")))
