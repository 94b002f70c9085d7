"""The shop's real client, call for call: racing session starts, page types nobody
listed, payments whose checkout start was lost (issue 10), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import Engine

from nilemetrics.server.tables import checkouts_t, errors_t, live_metrics_t, visits_t
from tests.api.conftest import rows
from tests.api.journeys import P, metrics, page_sum, post, start, visit
from tests.support import LiveServer


def page_load(client: httpx.Client, page_type: str, ident: str | None = None) -> str:
    """A page load as the client does it: the constructor starts a session, and the
    first page visit fires before that answer arrives, so it starts a second one and
    sends the visit with that. Returns the session id the client goes on with."""
    start(client)  # the constructor's session: never reports a page
    sid = start(client)
    visit(client, sid, page_type, ident)
    return sid


def end_by_beacon(client: httpx.Client, sid: str) -> None:
    """session/end as the client's sendBeacon sends it on unload: a JSON Blob."""
    response = client.post(f"{P}/session/end", content=f'{{"sessionId":"{sid}"}}',
                           headers={"Content-Type": "text/plain;charset=UTF-8"})
    assert response.status_code == 200, response.text


def checkout_error(sid: str, amount: Any, method: str, item_count: int) -> dict[str, Any]:
    """The client's payment error on a checkout page it reloaded: the checkout facts
    ride in the nested error's own errorDetails."""
    return {
        "sessionId": sid,
        "errorDetails": {
            "errorCode": "payment_failed",
            "errorMessage": "Payment could not be processed",
            "errorDetails": {"totalAmount": amount, "paymentMethod": method,
                             "itemCount": item_count},
            "timestamp": "2026-11-24T12:00:00.000Z",
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0.0.0",
            "url": "https://shop.test/checkout/payment",
        },
    }


def live(client: httpx.Client, server: LiveServer) -> dict[str, Any]:
    """live-metrics, after checking that its pages add up to liveSessions."""
    m = metrics(client, server.auth)
    assert page_sum(m) == m["liveSessions"]
    return m


def test_racing_session_starts_count_one_visitor(
    client: httpx.Client, server: LiveServer
) -> None:
    """One tab whose client started two sessions is one live visitor, at every step."""
    sid = page_load(client, "homepage")
    m = live(client, server)
    assert (m["liveSessions"], m["homepage"], m["other"]) == (1, 1, 0)
    assert m["pages"] == {"homepage": 1}
    server.clock.advance(30)
    post(client, "session/heartbeat", {"sessionId": sid})
    visit(client, sid, "category", "shoes")
    m = live(client, server)
    assert (m["liveSessions"], m["categories"], m["pages"]) == (1, {"shoes": 1}, {"category": 1})


def test_two_tabs_count_two_visitors(client: httpx.Client, server: LiveServer) -> None:
    """Two tabs, four sessions started: two live visitors."""
    page_load(client, "homepage")
    page_load(client, "offer", "black-friday")
    m = live(client, server)
    assert (m["liveSessions"], m["homepage"], m["offers"], m["other"]) == (
        2, 1, {"black-friday": 1}, 0)


def test_reload_on_checkout_counts_one_visitor(client: httpx.Client, server: LiveServer) -> None:
    """A reload on checkout (end by beacon, two new starts) leaves one visitor, on checkout."""
    sid = page_load(client, "homepage")
    visit(client, sid, "checkout")
    post(client, "track/checkout-start", {"sessionId": sid, "checkoutItems": [{"id": 1}],
                                          "totalAmount": 84.2})
    server.clock.advance(5)
    end_by_beacon(client, sid)
    page_load(client, "checkout")
    m = live(client, server)
    assert (m["liveSessions"], m["checkout"], m["other"]) == (1, 1, 0)


def test_a_session_that_only_started_is_on_no_page(
    client: httpx.Client, server: LiveServer, db: Engine
) -> None:
    """Started and heartbeating, but no page, checkout or payment yet: not live anywhere."""
    sid = start(client)
    post(client, "session/heartbeat", {"sessionId": sid})
    m = live(client, server)
    assert (m["liveSessions"], m["other"], m["pages"]) == (0, 0, {})


def test_a_checkout_without_page_visits_is_live_on_checkout(
    client: httpx.Client, server: LiveServer
) -> None:
    """A session whose first event is its checkout start counts on the checkout page."""
    sid = start(client)
    post(client, "track/checkout-start", {"sessionId": sid, "checkoutItems": [],
                                          "totalAmount": 10})
    m = live(client, server)
    assert (m["liveSessions"], m["checkout"], m["pages"]) == (1, 1, {"checkout": 1})
    post(client, "track/payment-start", {"sessionId": sid})
    m = live(client, server)
    assert (m["checkout"], m["payment"]) == (1, 0)  # it stays where it was counted


def test_page_types_nobody_listed_are_stored_and_counted(
    client: httpx.Client, server: LiveServer, db: Engine
) -> None:
    """product_listing (and any slug) is a 200, moves the shopper, and is counted as sent."""
    sid = page_load(client, "homepage")
    visit(client, sid, "product_listing")
    other = page_load(client, "Gift-Cards_2026")
    assert other
    m = live(client, server)
    assert (m["liveSessions"], m["homepage"], m["other"]) == (2, 0, 0)
    assert m["pages"] == {"Gift-Cards_2026": 1, "product_listing": 1}
    stored = [(v.page_type, v.is_active) for v in rows(db, visits_t)]
    assert stored == [("homepage", False), ("product_listing", True), ("Gift-Cards_2026", True)]
    long_slug = "x" * 64
    visit(client, sid, long_slug)
    assert live(client, server)["pages"] == {"Gift-Cards_2026": 1, long_slug: 1}


def test_live_metrics_table_has_every_page_type(
    client: httpx.Client, server: LiveServer, db: Engine
) -> None:
    """The live_metrics table other tools read gets a row per live page type too."""
    page_load(client, "product_listing")

    def page_rows() -> list[tuple[str, int]]:
        return [(r.metric_identifier, r.active_users_count)
                for r in rows(db, live_metrics_t) if r.metric_type == "page"]

    deadline = time.monotonic() + 5  # the hub stores each changed snapshot
    while page_rows() != [("product_listing", 1)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert page_rows() == [("product_listing", 1)]


def test_reload_mid_checkout_error_then_success(
    client: httpx.Client, server: LiveServer, db: Engine
) -> None:
    """Checkout start lost after a reload: the error keeps amount, method and item count
    from its details, and the success that follows counts in the hour's figures."""
    sid = page_load(client, "homepage")
    visit(client, sid, "checkout")
    end_by_beacon(client, sid)
    sid = page_load(client, "checkout")  # the reload: checkout-start is dropped
    visit(client, sid, "payment")
    post(client, "track/payment-start", {"sessionId": sid})
    post(client, "track/payment-error", checkout_error(sid, 84.2, "ziina", 2))

    errors = client.get(f"{P}/payment-errors", headers=server.auth).json()
    assert [(r["total_amount"], r["payment_method"], r["item_count"], r["checkout_items"],
             r["attempt"], r["checkout_status"]) for r in errors] == [
        (84.2, "ziina", 2, None, 1, "failed")]
    m = live(client, server)
    assert (m["checkoutsLastHour"], m["paymentErrorsLastHour"],
            m["paymentFailuresLastHour"], m["paymentSuccessRate"]) == (1, 1, 1, 0.0)

    server.clock.advance(20)
    post(client, "track/payment-success", {"sessionId": sid})
    m = live(client, server)
    assert (m["paymentSuccessesLastHour"], m["paymentFailuresLastHour"],
            m["paymentSuccessRate"]) == (1, 0, 1.0)
    [checkout] = rows(db, checkouts_t)
    assert (checkout.session_id, checkout.status, checkout.total_amount,
            checkout.payment_method, checkout.item_count, checkout.error_count) == (
        sid, "completed", Decimal("84.20"), "ziina", 2, 1)
    [error] = rows(db, errors_t)
    assert (error.checkout_id, error.amount, error.payment_method) == (
        checkout.id, Decimal("84.20"), "ziina")

    post(client, "track/payment-success", {"sessionId": sid})  # a retry of the success
    assert live(client, server)["paymentSuccessesLastHour"] == 1
    assert len(rows(db, checkouts_t)) == 1


def test_method_in_error_details_replaces_unknown(
    client: httpx.Client, server: LiveServer, db: Engine
) -> None:
    """A checkout started with method "unknown" takes the method the error names."""
    sid = page_load(client, "checkout")
    post(client, "track/checkout-start", {"sessionId": sid, "checkoutItems": [{"id": 7}],
                                          "totalAmount": "19.99", "paymentMethod": "unknown"})
    post(client, "track/payment-error", checkout_error(sid, "19.99", "apple_pay", 1))
    [row] = client.get(f"{P}/payment-errors", headers=server.auth).json()
    assert (row["payment_method"], row["total_amount"], row["item_count"],
            row["checkout_items"]) == ("apple_pay", 19.99, 1, [{"id": 7}])
    [checkout] = rows(db, checkouts_t)
    assert (checkout.payment_method, checkout.total_amount) == ("apple_pay", Decimal("19.99"))


def test_flat_error_without_checkout_keeps_its_items(
    client: httpx.Client, server: LiveServer, db: Engine
) -> None:
    """The flat form's details (and top-level fields) create the checkout just as well."""
    sid = page_load(client, "payment")
    items = [{"name": "Mug", "price": 9.99}, {"name": "Tea", "price": 4.5}]
    post(client, "track/payment-error", {
        "sessionId": sid, "errorCode": "card_declined", "errorMessage": "Declined",
        "paymentMethod": "card", "errorDetails": {"checkoutItems": items, "amount": "14.49"},
    })
    [row] = client.get(f"{P}/payment-errors", headers=server.auth).json()
    assert (row["error_code"], row["total_amount"], row["payment_method"], row["item_count"],
            row["checkout_items"]) == ("card_declined", 14.49, "card", 2, items)


def test_success_without_any_checkout_is_counted(
    client: httpx.Client, server: LiveServer, db: Engine
) -> None:
    """A payment success with no checkout before it counts, with what it carries."""
    sid = page_load(client, "payment")
    post(client, "track/payment-success", {"sessionId": sid, "totalAmount": 12.5,
                                           "paymentMethod": "paypal"})
    m = live(client, server)
    assert (m["checkoutsLastHour"], m["paymentSuccessesLastHour"], m["paymentSuccessRate"]) == (
        1, 1, 1.0)
    [checkout] = rows(db, checkouts_t)
    assert (checkout.status, checkout.total_amount, checkout.payment_method) == (
        "completed", Decimal("12.50"), "paypal")


def test_odd_values_in_error_details_are_ignored_not_refused(
    client: httpx.Client, server: LiveServer
) -> None:
    """Free-form details with amounts or counts that don't fit are stored, not used."""
    sid = page_load(client, "payment")
    post(client, "track/payment-error", checkout_error(sid, "a lot", "unknown", -3))
    [row] = client.get(f"{P}/payment-errors", headers=server.auth).json()
    assert (row["total_amount"], row["payment_method"], row["item_count"]) == (None, None, None)
    assert row["error_details"]["errorDetails"] == {
        "totalAmount": "a lot", "paymentMethod": "unknown", "itemCount": -3}


def test_amounts_are_json_numbers_rounded_to_cents(
    client: httpx.Client, server: LiveServer
) -> None:
    """Every amount on the wire is a number with at most two decimals (toFixed works)."""
    sid = page_load(client, "checkout")
    post(client, "track/checkout-start", {"sessionId": sid, "checkoutItems": [],
                                          "totalAmount": 59.970000000000006})
    post(client, "track/payment-error", checkout_error(sid, 1, "card", 0))
    [row] = client.get(f"{P}/payment-errors", headers=server.auth).json()
    assert isinstance(row["total_amount"], float) and row["total_amount"] == 59.97
