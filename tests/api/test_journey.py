"""A whole shopper journey, checked at every step over HTTP and over the WebSocket."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import websockets

from tests.api.journeys import P, nested_error, page_sum
from tests.api.test_websocket import is_metrics, recv_until
from tests.support import LiveServer

EXPECTED_ZERO = {"homepage": 0, "categories": {}, "offers": {}, "checkout": 0, "payment": 0,
                 "paymentError": 0, "liveSessions": 0}


def _expect(**changes: Any) -> dict[str, Any]:
    return {**EXPECTED_ZERO, **changes, "liveSessions": 1}


async def test_whole_journey_live_numbers_each_step(server: LiveServer) -> None:
    """homepage → category → offer → checkout → payment → error → retry → success → end."""
    async with websockets.connect(f"{server.ws_url}?token={server.token}") as ws, \
            httpx.AsyncClient(base_url=server.base_url) as http:
        await recv_until(ws, lambda f: f["event"] == "metrics-update")

        async def step(path: str, body: dict[str, Any], expected: dict[str, Any],
                       changes: bool = True) -> None:
            response = await http.post(f"{P}/{path}", json=body)
            assert response.status_code == 200, response.text
            got = (await http.get(f"{P}/live-metrics", headers=server.auth)).json()
            assert {k: got[k] for k in expected} == expected, path
            assert page_sum(got) == got["liveSessions"]
            if changes:  # an unchanged snapshot is (rightly) not pushed again
                await recv_until(
                    ws, is_metrics(lambda d: {k: d[k] for k in expected} == expected)
                )
            server.clock.advance(5)

        sid = (await http.post(f"{P}/session/start",
                               json={"email": "journey@example.com"})).json()["sessionId"]
        pv = "track/page-visit"
        await step(pv, {"sessionId": sid, "pageType": "homepage"}, _expect(homepage=1))
        await step(pv, {"sessionId": sid, "pageType": "category",
                        "pageIdentifier": "electronics"},
                   _expect(categories={"electronics": 1}))
        await step(pv, {"sessionId": sid, "pageType": "offer", "pageIdentifier": "tv-deal"},
                   _expect(offers={"tv-deal": 1}))
        await step(pv, {"sessionId": sid, "pageType": "checkout"}, _expect(checkout=1))
        await step("track/checkout-start",
                   {"sessionId": sid, "checkoutItems": [{"name": "TV", "price": 399.0}],
                    "totalAmount": 399.0, "paymentMethod": "card"},
                   _expect(checkout=1, checkoutsLastHour=1))
        await step(pv, {"sessionId": sid, "pageType": "payment"}, _expect(payment=1))
        await step("track/payment-start", {"sessionId": sid}, _expect(payment=1),
                   changes=False)
        await step("track/payment-error", nested_error(sid, "card_declined", "Declined"),
                   _expect(payment=1, paymentErrorsLastHour=1, paymentSuccessRate=0.0))
        errors = await recv_until(ws, lambda f: f["event"] == "payment-errors-update"
                                  and len(f["data"]) == 1)
        assert errors["data"][0]["email"] == "journey@example.com"
        assert errors["data"][0]["total_amount"] == 399.0  # a number: the dashboard's toFixed
        await step(pv, {"sessionId": sid, "pageType": "payment_error"}, _expect(paymentError=1))
        await step(pv, {"sessionId": sid, "pageType": "payment"}, _expect(payment=1))
        await step("track/payment-start", {"sessionId": sid}, _expect(payment=1),
                   changes=False)
        await step("track/payment-success", {"sessionId": sid},
                   _expect(payment=1, paymentErrorsLastHour=1, paymentSuccessesLastHour=1,
                           paymentSuccessRate=1.0))
        end = await http.post(f"{P}/session/end",
                              content=json.dumps({"sessionId": sid}).encode(),
                              headers={"Content-Type": "text/plain;charset=UTF-8"})
        assert end.status_code == 200
        final = await recv_until(ws, is_metrics(lambda d: d["liveSessions"] == 0))
        assert final["data"]["payment"] == 0
        assert final["data"]["paymentSuccessRate"] == 1.0


async def test_concurrent_sessions_keep_sum_invariant(server: LiveServer) -> None:
    """Many sessions moving pages at once: pages always sum to the live total."""
    pages = [("homepage", None), ("category", "electronics"), ("category", "garden"),
             ("offer", "o-1"), ("product", "p-9"), ("checkout", None), ("payment", None),
             ("payment_error", None), ("search", None)]
    sessions = 60
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=30) as http:
        sids = [(await http.post(f"{P}/session/start")).json()["sessionId"]
                for _ in range(sessions)]
        stop = asyncio.Event()
        observed: list[dict[str, Any]] = []

        async def watcher() -> None:
            while not stop.is_set():
                observed.append((await http.get(f"{P}/live-metrics",
                                                 headers=server.auth)).json())

        async def shopper(index: int, sid: str) -> None:
            for hop in range(8):
                page, ident = pages[(index + hop) % len(pages)]
                body: dict[str, Any] = {"sessionId": sid, "pageType": page}
                if ident:
                    body["pageIdentifier"] = ident
                response = await http.post(f"{P}/track/page-visit", json=body)
                assert response.status_code == 200, response.text
            if index % 3 == 0:
                await http.post(f"{P}/session/end", json={"sessionId": sid})

        watch = asyncio.create_task(watcher())
        await asyncio.gather(*(shopper(i, s) for i, s in enumerate(sids)))
        stop.set()
        await watch
        final = (await http.get(f"{P}/live-metrics", headers=server.auth)).json()

    assert observed, "the watcher saw no snapshot"
    for snap in [*observed, final]:
        assert page_sum(snap) == snap["liveSessions"]
    assert final["liveSessions"] == sessions - len(range(0, sessions, 3))
    # Each shopper's last page is pages[(i + 7) % 9]; check the exact distribution.
    expected: dict[str, int] = {}
    for i in range(sessions):
        if i % 3 == 0:
            continue
        page, ident = pages[(i + 7) % len(pages)]
        key = f"{page}:{ident}" if ident else page
        expected[key] = expected.get(key, 0) + 1
    assert final["categories"] == {k.split(":")[1]: v for k, v in expected.items()
                                   if k.startswith("category:")}
    assert final["homepage"] == expected.get("homepage", 0)
    assert final["paymentError"] == expected.get("payment_error", 0)
