"""Small client-side helpers that post exactly what the shop's existing client posts."""

from __future__ import annotations

from typing import Any

import httpx

P = "/api/metrics"


def start(client: httpx.Client, **contact: Any) -> str:
    """session/start as the client does it: POST, JSON content type, maybe no body."""
    if contact:
        response = client.post(f"{P}/session/start", json=contact)
    else:
        response = client.post(
            f"{P}/session/start", headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 200, response.text
    session_id: str = response.json()["sessionId"]
    return session_id


def visit(
    client: httpx.Client, sid: str, page_type: str, ident: str | None = None, **extra: Any
) -> httpx.Response:
    """track/page-visit with the client's field names."""
    body: dict[str, Any] = {"sessionId": sid, "pageType": page_type,
                            "pageUrl": f"https://shop.test/{page_type}"}
    if ident is not None:
        body["pageIdentifier"] = ident
    body.update(extra)
    response = client.post(f"{P}/track/page-visit", json=body)
    assert response.status_code == 200, response.text
    return response


def post(client: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    """POST a JSON body and insist on the tracking answer."""
    response = client.post(f"{P}/{path}", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    return response


def nested_error(sid: str, code: str, message: str) -> dict[str, Any]:
    """The payment-error body exactly as the existing client builds it."""
    return {
        "sessionId": sid,
        "errorDetails": {
            "errorCode": code,
            "errorMessage": message,
            "errorDetails": {"gateway": "stripe", "declineCode": code},
            "timestamp": "2026-11-24T12:00:00.000Z",
            "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0.0.0",
            "url": "https://shop.test/payment",
        },
    }


def metrics(client: httpx.Client, auth: dict[str, str]) -> dict[str, Any]:
    """GET live-metrics."""
    response = client.get(f"{P}/live-metrics", headers=auth)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


_SCALAR_KEYS = {"homepage": "homepage", "product": "product", "search": "search",
                "checkout": "checkout", "payment": "payment", "paymentError": "payment_error",
                "other": "other"}


def page_sum(m: dict[str, Any]) -> int:
    """Sum of live sessions over ``pages``, after checking the per-type keys agree with it."""
    pages = m["pages"]
    for key, page_type in _SCALAR_KEYS.items():
        assert m[key] == pages.get(page_type, 0), key
    assert sum(m["categories"].values()) == pages.get("category", 0)
    assert sum(m["offers"].values()) == pages.get("offer", 0)
    return sum(pages.values())
