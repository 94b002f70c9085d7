"""A mobile app's whole journey as a plain HTTP client: no browser, no cookies, no CORS."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import Engine

from nilemetrics.server.tables import checkouts_t, events_t, sessions_t
from tests.api.conftest import rows
from tests.api.journeys import P, metrics
from tests.support import LiveServer

APP_HEADERS = {"User-Agent": "ShopApp/4.2.1 (iPhone; iOS 18.1)"}


def test_an_ios_app_drives_a_whole_journey(server: LiveServer, db: Engine) -> None:
    """Start (platform, appVersion), screens, a custom event, checkout, payment, end."""
    with httpx.Client(base_url=server.base_url, headers=APP_HEADERS, timeout=10) as app:
        started = app.post(f"{P}/session/start", json={
            "platform": "ios", "appVersion": "4.2.1 (77)", "userId": "u-42"})
        assert started.status_code == 200, started.text
        assert "set-cookie" not in started.headers
        sid = started.json()["sessionId"]
        answers = [
            app.post(f"{P}/track/page-visit", json={"sessionId": sid, "pageType": "homepage"}),
            app.post(f"{P}/track/page-visit", json={
                "sessionId": sid, "pageType": "product", "pageIdentifier": "tv-55"}),
            app.post(f"{P}/track/event", json={
                "sessionId": sid, "name": "add_to_cart", "properties": {"sku": "tv-55"}}),
            app.post(f"{P}/track/checkout-start", json={
                "sessionId": sid, "checkoutItems": [{"id": "tv-55", "price": 499.0}],
                "totalAmount": 499.0, "paymentMethod": "apple_pay"}),
            app.post(f"{P}/session/heartbeat", json={"sessionId": sid}),
        ]
        assert [a.json() for a in answers] == [{"success": True}] * 5
        assert all("set-cookie" not in a.headers for a in answers)
        # Offline for a while: the app sends what it queued as one batch.
        batch = app.post(f"{P}/events", json={"events": [
            {"type": "payment-start", "sessionId": sid, "eventId": "ios-1"},
            {"type": "payment-success", "sessionId": sid, "eventId": "ios-2"},
        ]})
        assert batch.json() == {"success": True, "accepted": 2, "duplicates": 0}
        live = metrics(app, server.auth)
        assert live["platforms"] == {"web": 0, "ios": 1, "android": 0, "other": 0}
        assert live["customEvents"] == {"add_to_cart": 1}
        assert live["product"] == 1 and live["liveSessions"] == 1
        assert app.post(f"{P}/session/end", json={"sessionId": sid}).json() == {"success": True}
        assert app.cookies.jar is not None and len(app.cookies.jar) == 0
        ended = metrics(app, server.auth)
        assert ended["liveSessions"] == 0 and ended["platforms"]["ios"] == 0
    [session] = rows(db, sessions_t)
    assert (session.session_id, session.platform, session.app_version, session.user_id) == (
        sid, "ios", "4.2.1 (77)", "u-42")
    assert session.user_agent == APP_HEADERS["User-Agent"] and session.is_active is False
    [checkout] = rows(db, checkouts_t)
    assert (checkout.status, checkout.payment_method) == ("completed", "apple_pay")
    assert [r.name for r in rows(db, events_t, events_t.c.event_type == "event")] == [
        "add_to_cart"]


def test_platforms_are_counted_apart_and_unknown_names_are_other(
    client: httpx.Client, server: LiveServer, db: Engine
) -> None:
    """web, ios, android in any case; another name is other; no platform is web."""
    for platform in ("Android", "android", "iOS", "web", "watchOS", None):
        body = {} if platform is None else {"platform": platform}
        sid = client.post(f"{P}/session/start", json=body).json()["sessionId"]
        client.post(f"{P}/track/page-visit", json={"sessionId": sid, "pageType": "homepage"})
    live = metrics(client, server.auth)
    assert live["platforms"] == {"web": 2, "ios": 1, "android": 2, "other": 1}
    assert sum(live["platforms"].values()) == live["liveSessions"] == 6
    assert sorted(str(r.platform) for r in rows(db, sessions_t)) == [
        "None", "android", "android", "ios", "other", "web"]


def test_a_new_start_updates_the_app_version_and_keeps_the_platform(
    client: httpx.Client, db: Engine
) -> None:
    """An app upgraded mid-session sends only its new version: the platform stays."""
    sid = str(uuid.uuid4())
    client.post(f"{P}/session/start", json={"sessionId": sid, "platform": "android",
                                            "appVersion": "1.0"})
    client.post(f"{P}/session/start", json={"sessionId": sid, "appVersion": "1.1"})
    [session] = rows(db, sessions_t)
    assert (session.platform, session.app_version) == ("android", "1.1")


@pytest.mark.parametrize(("body", "detail"), [
    ({"platform": 7}, "platform: Input should be 'web', 'ios', 'android' or 'other'"),
    ({"appVersion": "v" * 65}, "appVersion: String should have at most 64 characters"),
    ({"appVersion": 4.2}, "appVersion: Input should be a valid string"),
])
def test_bad_platform_fields_are_a_422(client: httpx.Client, db: Engine, body: dict[str, object],
                                        detail: str) -> None:
    """A platform that is not text, or an app version too long or not text: 422, nothing stored."""
    response = client.post(f"{P}/session/start", json=body)
    assert response.status_code == 422
    assert response.json()["detail"] == detail
    assert rows(db, sessions_t) == []
