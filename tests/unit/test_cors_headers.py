"""The front door's CORS headers are those Starlette's CORS middleware adds."""

from __future__ import annotations

import asyncio

import pytest
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Message, Receive, Scope, Send

from nilemetrics.server.middleware import CorsHeaders

SHOP = "https://shop.example"


async def _answer(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


def _through_middleware(cors: CORSMiddleware, origin: str | None) -> list[tuple[bytes, bytes]]:
    sent: list[Message] = []
    headers = [] if origin is None else [(b"origin", origin.encode())]
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(cors(scope, receive, send))
    added: list[tuple[bytes, bytes]] = sent[0]["headers"][1:]  # after content-type
    return added


@pytest.mark.parametrize("allowed", [[SHOP], ["*"], []])
@pytest.mark.parametrize("origin", [None, SHOP, "https://elsewhere.example", ""])
def test_headers_are_the_middlewares_for_every_kind_of_origin(
    allowed: list[str], origin: str | None
) -> None:
    """Allowed, other, empty or no origin; a listed or a wildcard configuration."""
    options = {"allow_origins": allowed, "allow_credentials": True,
               "allow_methods": ["GET", "POST"], "allow_headers": ["Content-Type"]}
    expected = _through_middleware(CORSMiddleware(_answer, **options), origin)
    front = CorsHeaders(CORSMiddleware(_answer, **options))
    raw = None if origin is None else origin.encode()
    assert front.headers(raw) == expected
    assert front.headers(raw) == expected  # kept, and the same the second time


def test_only_so_many_origins_are_kept() -> None:
    """A client sending a new Origin each time cannot grow the kept headers without bound."""
    cors = CORSMiddleware(_answer, allow_origins=[SHOP], allow_credentials=True)
    front = CorsHeaders(cors)
    for n in range(CorsHeaders.MAX_KEPT * 3):
        origin = f"https://x{n}.example"
        assert front.headers(origin.encode()) == _through_middleware(cors, origin)
    assert len(front._kept) == CorsHeaders.MAX_KEPT
