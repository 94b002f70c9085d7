"""Dashboard endpoints: token, live numbers, payment errors, cleanup; CORS; privacy."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from nilemetrics.config import Settings
from nilemetrics.server.tables import errors_t, events_t, sessions_t
from tests.api.conftest import rows
from tests.api.journeys import P, metrics, nested_error, post, start, visit
from tests.support import FakeClock, LiveServer, run_server


@pytest.mark.parametrize("path", ["live-metrics", "payment-errors", "sessions?page=product"])
def test_dashboard_requires_token(client: httpx.Client, path: str) -> None:
    """Missing or wrong bearer tokens get 401 with a WWW-Authenticate challenge."""
    missing = client.get(f"{P}/{path}")
    assert missing.status_code == 401
    assert missing.json() == {"detail": "missing bearer token"}
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = client.get(f"{P}/{path}", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json() == {"detail": "invalid bearer token"}
    basic = client.get(f"{P}/{path}", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert basic.status_code == 401


def test_cleanup_requires_token(client: httpx.Client) -> None:
    """The operations endpoint is protected like the dashboard ones."""
    assert client.post(f"{P}/cleanup-sessions").status_code == 401


def test_live_metrics_fields(client: httpx.Client, server: LiveServer) -> None:
    """live-metrics reports every page bucket, totals and the last hour's figures."""
    a, b, c, d = (start(client) for _ in range(4))
    visit(client, a, "homepage")
    visit(client, b, "category", "electronics")
    visit(client, c, "category", "electronics")
    visit(client, d, "offer", "summer-sale")
    start(client)  # no page yet: on no page, not live
    e = start(client)
    visit(client, e, "product_listing")  # a page type nobody listed: counted as sent
    m = metrics(client, server.auth)
    assert m["homepage"] == 1
    assert m["categories"] == {"electronics": 2}
    assert m["offers"] == {"summer-sale": 1}
    assert (m["checkout"], m["payment"], m["paymentError"], m["other"]) == (0, 0, 0, 0)
    assert m["pages"] == {"category": 2, "homepage": 1, "offer": 1, "product_listing": 1}
    assert m["liveSessions"] == 5
    assert m["paymentErrorsLastHour"] == 0
    assert m["paymentSuccessRate"] is None
    assert m["liveWindowSeconds"] == 90.0
    assert m["lastUpdated"] == "2026-11-24T12:00:00Z"


def test_payment_errors_newest_first_with_since_and_limit(
    client: httpx.Client, server: LiveServer
) -> None:
    """payment-errors: newest first, default last hour, ``since`` and ``limit`` respected."""
    sid = start(client, email="eve@example.com", phone="555-0199")
    post(client, "track/checkout-start", {"sessionId": sid, "checkoutItems": [{"name": "Lamp"}],
                                          "totalAmount": "25.5", "paymentMethod": "card"})
    post(client, "track/payment-error", nested_error(sid, "expired_card", "Card expired"))
    server.clock.advance(2 * 3600)
    for code in ("card_declined", "incorrect_cvc", "insufficient_funds"):
        server.clock.advance(60)
        post(client, "track/payment-error", nested_error(sid, code, code.replace("_", " ")))

    recent = client.get(f"{P}/payment-errors", headers=server.auth).json()
    assert [r["error_code"] for r in recent] == ["insufficient_funds", "incorrect_cvc",
                                                 "card_declined"]
    row = recent[0]
    assert set(row) == {"id", "session_id", "attempt", "email", "phone", "checkout_items",
                        "item_count", "total_amount", "payment_method", "payment_error_at",
                        "error_code", "error_message", "error_details", "ip_address", "user_agent",
                        "checkout_status"}
    assert (row["email"], row["phone"], row["total_amount"], row["payment_method"]) == (
        "eve@example.com", "555-0199", 25.5, "card")
    assert row["checkout_items"] == [{"name": "Lamp"}]
    assert row["attempt"] == 4 and row["checkout_status"] == "failed"
    assert row["error_details"]["errorCode"] == "insufficient_funds"
    assert row["ip_address"] == "127.0.0.0"
    assert row["payment_error_at"] == "2026-11-24T14:03:00Z"

    everything = client.get(f"{P}/payment-errors", params={"since": "2026-11-24T00:00:00Z"},
                            headers=server.auth).json()
    assert [r["attempt"] for r in everything] == [4, 3, 2, 1]
    limited = client.get(f"{P}/payment-errors",
                         params={"since": "2026-11-24T00:00:00", "limit": 2},
                         headers=server.auth).json()
    assert [r["attempt"] for r in limited] == [4, 3]
    bad = client.get(f"{P}/payment-errors", params={"limit": 0}, headers=server.auth)
    assert bad.status_code == 422
    assert bad.json()["detail"] == "limit: Input should be greater than or equal to 1"
    bad_since = client.get(f"{P}/payment-errors", params={"since": "yesterday"},
                           headers=server.auth)
    assert bad_since.status_code == 422
    assert bad_since.json()["detail"].startswith("since: Input should be a valid datetime")


def test_cors_preflight_with_credentials(client: httpx.Client) -> None:
    """Browsers on the configured shop origin may POST with credentials (preflight too)."""
    preflight = client.options(
        f"{P}/track/page-visit",
        headers={"Origin": "http://shop.test", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"},
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://shop.test"
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "content-type" in preflight.headers["access-control-allow-headers"].lower()

    actual = client.post(f"{P}/session/start", headers={"Origin": "http://shop.test",
                                                        "Content-Type": "application/json"})
    assert actual.status_code == 200
    assert actual.headers["access-control-allow-origin"] == "http://shop.test"
    assert actual.headers["access-control-allow-credentials"] == "true"

    other = client.options(
        f"{P}/track/page-visit",
        headers={"Origin": "http://evil.test", "Access-Control-Request-Method": "POST"},
    )
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers


def test_error_answers_carry_cors_headers(client: httpx.Client) -> None:
    """A 422 or 413 still has CORS headers, so the shop's page can read the reason."""
    response = client.post(f"{P}/track/page-visit", json={"sessionId": "x"},
                           headers={"Origin": "http://shop.test"})
    assert response.status_code == 422
    assert response.headers["access-control-allow-origin"] == "http://shop.test"


@pytest.mark.parametrize("header", [{"Sec-GPC": "1"}, {"DNT": "1"}])
def test_privacy_signals_store_no_personal_data(
    client: httpx.Client, db: Engine, server: LiveServer, header: dict[str, str]
) -> None:
    """With GPC or DNT the session counts, but no contact data, IP or user agent is kept."""
    response = client.post(f"{P}/session/start", headers=header,
                           json={"email": "gpc@example.com", "phone": "1", "userId": "u"})
    sid = response.json()["sessionId"]
    client.post(f"{P}/track/page-visit", headers=header,
                json={"sessionId": sid, "pageType": "payment"})
    client.post(f"{P}/track/payment-error", headers=header,
                json=nested_error(sid, "card_declined", "Declined"))
    [session] = rows(db, sessions_t)
    assert (session.email, session.phone, session.user_id) == (None, None, None)
    assert (session.ip_address, session.user_agent) == (None, None)
    [error] = rows(db, errors_t)
    assert (error.ip_address, error.user_agent) == (None, None)
    assert "userAgent" not in error.error_details
    for event in rows(db, events_t):
        assert "gpc@example.com" not in str(event.payload)
        assert "Mozilla" not in str(event.payload)
    assert metrics(client, server.auth)["payment"] == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("mode", "stored"), [("full", "127.0.0.1"), ("none", None),
                                              ("anonymized", "127.0.0.0")])
def test_ip_storage_modes(settings: Settings, db: Engine, mode: str, stored: str | None) -> None:
    """ip_storage decides whether the full, the /24 or no address is stored."""
    settings = settings.model_copy(update={"ip_storage": mode})
    with run_server(settings, FakeClock()) as live, httpx.Client(base_url=live.base_url) as http:
        sid = start(http)
    [session] = rows(db, sessions_t)
    assert session.session_id == sid and session.ip_address == stored


def test_anonymize_ip_prefixes() -> None:
    """IPv4 keeps /24, IPv6 /48, mapped IPv4 is treated as IPv4, garbage is dropped."""
    from nilemetrics.server.ingestion.privacy import anonymize_ip

    assert anonymize_ip("203.0.113.77") == "203.0.113.0"
    assert anonymize_ip("2001:db8:abcd:1234::1") == "2001:db8:abcd::"
    assert anonymize_ip("::ffff:198.51.100.9") == "198.51.100.0"
    assert anonymize_ip("not-an-ip") is None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_tokens_never_logged(server: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    """Neither the ?token= of a WebSocket URL nor a bearer header reaches the logs."""
    from nilemetrics.server.redaction import RedactTokensFilter, redact

    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1,
                               '%s - "WebSocket %s" [accepted]',
                               ("127.0.0.1:5", f"/api/metrics/ws?token={server.token}&x=1"),
                               None)
    RedactTokensFilter().filter(record)
    assert server.token not in record.getMessage()
    assert "token=***&x=1" in record.getMessage()
    assert redact(f"Authorization: Bearer {server.token}") == "Authorization: Bearer ***"
    assert any(isinstance(f, RedactTokensFilter)
               for f in logging.getLogger("uvicorn.access").filters)
    assert any(isinstance(f, RedactTokensFilter)
               for f in logging.getLogger("uvicorn.error").filters)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_generated_token_is_stored_privately_and_reused(settings: Settings,
                                                        tmp_path: Path) -> None:
    """Without a configured token one is generated once, stored 0600, and accepted."""
    settings = settings.model_copy(update={"dashboard_token": [],
                                           "config_dir": tmp_path / "cfg"})
    from nilemetrics.config import ensure_dashboard_tokens

    tokens, generated = ensure_dashboard_tokens(settings)
    assert generated is not None and tokens == [generated]
    assert (settings.token_file.stat().st_mode & 0o777) == 0o600
    assert ensure_dashboard_tokens(settings) == ([generated], None)
    with run_server(settings.model_copy(update={"dashboard_token": [generated]})) as live:
        with httpx.Client(base_url=live.base_url) as http:
            ok = http.get(f"{P}/live-metrics", headers={"Authorization": f"Bearer {generated}"})
    assert ok.status_code == 200


def test_last_hour_funnel_is_one_cohort(client: httpx.Client, server: LiveServer) -> None:
    """The hour's funnel counts sessions of one cohort: sessions ≥ checkout ≥ payment ≥ paid."""

    def checkout(sid: str) -> None:
        post(client, "track/checkout-start", {"sessionId": sid, "totalAmount": 10,
                                              "checkoutItems": [{"name": "Mug"}]})

    idle, late_payer = start(client), start(client)
    visit(client, idle, "homepage")  # active two hours ago only: not in the hour
    visit(client, late_payer, "product")
    checkout(late_payer)  # its checkout started before the hour
    server.clock.advance(2 * 3600)

    browser, no_payment, failed, paid, retried, twice = (start(client) for _ in range(6))
    start(client)  # started only, never on a page: not a session of the funnel
    visit(client, browser, "search")
    for sid in (no_payment, failed, paid, retried, twice):
        visit(client, sid, "product")
        checkout(sid)
    checkout(twice)  # a second checkout of the same session counts once
    for sid in (failed, paid, retried):
        post(client, "track/payment-start", {"sessionId": sid})
    post(client, "track/payment-error", nested_error(failed, "card_declined", "Declined"))
    post(client, "track/payment-error", nested_error(retried, "incorrect_cvc", "Wrong CVC"))
    for sid in (paid, retried, late_payer):
        post(client, "track/payment-success", {"sessionId": sid})
    post(client, "session/end", {"sessionId": retried})  # ended in the hour: still counted

    m = metrics(client, server.auth)
    funnel = (m["sessionsLastHour"], m["checkoutSessionsLastHour"],
              m["paymentSessionsLastHour"], m["paidSessionsLastHour"])
    assert funnel == (7, 5, 3, 2)
    # The older figures keep their meaning: checkouts and completions in the hour.
    assert (m["checkoutsLastHour"], m["paymentSuccessesLastHour"]) == (6, 3)
    assert m["liveSessions"] == 6  # the ended session is no longer live


def test_sessions_on_a_page(client: httpx.Client, server: LiveServer) -> None:
    """sessions?page=: the live sessions on a page, since when, who, and where they came from."""
    ann = start(client, email="ann@example.com")
    visit(client, ann, "homepage")
    server.clock.advance(10)
    visit(client, ann, "product", "mug-42")
    bob = start(client)
    server.clock.advance(20)
    visit(client, bob, "product", "teapot")
    cat = start(client)
    visit(client, cat, "category", "electronics")
    lister = start(client)
    visit(client, lister, "product_listing")
    gone = start(client)
    visit(client, gone, "product")
    post(client, "session/end", {"sessionId": gone})  # ended: not live, not listed
    server.clock.advance(5)

    answer = client.get(f"{P}/sessions", params={"page": "product", "live": "true"},
                        headers=server.auth)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["total"] == 2
    first, second = body["sessions"]
    assert first == {
        "sessionId": ann, "pageType": "product", "pageIdentifier": "mug-42",
        "pageUrl": "https://shop.test/product", "enteredAt": "2026-11-24T12:00:10Z",
        "secondsOnPage": 25.0, "lastActivity": "2026-11-24T12:00:10Z",
        "email": "ann@example.com", "previousPageType": "homepage",
        "previousPageIdentifier": None,
    }
    assert (second["sessionId"], second["secondsOnPage"], second["email"],
            second["previousPageType"]) == (bob, 5.0, None, None)

    one = client.get(f"{P}/sessions", params={"page": "category", "id": "electronics"},
                     headers=server.auth).json()
    assert [s["sessionId"] for s in one["sessions"]] == [cat]
    several = client.get(f"{P}/sessions", params=[("page", "product"),
                                                  ("page", "product_listing")],
                         headers=server.auth).json()
    assert several["total"] == 3
    limited = client.get(f"{P}/sessions", params={"page": "product", "limit": 1},
                         headers=server.auth).json()
    assert (limited["total"], len(limited["sessions"])) == (2, 1)

    missing = client.get(f"{P}/sessions", headers=server.auth)
    assert missing.status_code == 422
    assert missing.json()["detail"].startswith("page: ")
    not_live = client.get(f"{P}/sessions", params={"page": "product", "live": "false"},
                          headers=server.auth)
    assert not_live.status_code == 422
    assert not_live.json()["detail"] == "live: only live sessions can be listed (live=true)"
