"""The framework-free ceiling: a raw ASGI app that parses and validates, then answers.

The same page-visit body model as nilemetrics (``PageVisitIn.model_validate_json``,
what the server's fast path runs on a valid body), the same JSON answer, no
framework, no middleware and no storage. Served by the same uvicorn as the others
(``python -m uvicorn benchmarks.raw_asgi:app``), it is what one uvicorn worker can
answer at all with this body: no storing server can beat it.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from nilemetrics.protocol.bodies import PageVisitIn

PATH = "/api/metrics/track/page-visit"
_OK = b'{"success":true}'
_OK_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"16")]
_EMPTY = b"{}"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """POST PATH: validate the body, 200 ``{"success":true}`` or 422; GET: ``{}``."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["method"] != "POST" or scope["path"] != PATH:
        # What the benchmark's start-up probe (GET /openapi.json) needs: an answer.
        await _answer(send, 200, _EMPTY)
        return
    chunks = []
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    try:
        PageVisitIn.model_validate_json(b"".join(chunks))
    except ValidationError as exc:
        await _answer(send, 422, exc.json().encode())
        return
    await send({"type": "http.response.start", "status": 200, "headers": _OK_HEADERS})
    await send({"type": "http.response.body", "body": _OK})


async def _answer(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
    ]})
    await send({"type": "http.response.body", "body": body})
