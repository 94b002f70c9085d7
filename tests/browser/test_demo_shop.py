"""A shopper clicks through the demo shop in Chromium; the live numbers follow."""

from __future__ import annotations

from typing import Any

from tests.browser.conftest import Site


def _pages(metrics: dict[str, Any]) -> int:
    """Sessions counted on some page: must always equal liveSessions."""
    plain = ("homepage", "product", "search", "checkout", "payment", "paymentError", "other")
    return (
        sum(metrics[key] for key in plain)
        + sum(metrics["categories"].values())
        + sum(metrics["offers"].values())
    )


def _on(site: Site, **expected: Any) -> dict[str, Any]:
    """Wait until the live numbers show exactly one session on the expected page."""

    def check(m: dict[str, Any]) -> bool:
        return (
            m["liveSessions"] == 1
            and _pages(m) == 1
            and all(m[k] == v for k, v in expected.items())
        )

    return site.wait_for(check)


def test_journey_through_the_demo_shop(site: Site, context: Any) -> None:
    page = context.new_page()
    page.goto(site.shop_url + "/")
    _on(site, homepage=1)

    page.click("header >> text=Electronics")
    page.wait_for_url("**/category/electronics")
    _on(site, categories={"electronics": 1}, homepage=0)

    page.click("header >> text=Nile demo shop")
    page.click("a[href='/offer/black-friday']")
    page.wait_for_url("**/offer/black-friday")
    _on(site, offers={"black-friday": 1}, categories={})

    page.click("[data-add='p-1001']")  # Wireless Headphones, 89.99 at 30% off: 62.99
    page.wait_for_url("**/cart")
    _on(site, other=1)
    assert page.text_content("#cart-total") == "€62.99"

    page.click("#to-checkout")
    page.wait_for_url("**/checkout")
    _on(site, checkout=1)

    page.fill("#email", "ada@example.com")
    page.select_option("#method", "card")
    page.click("#to-payment")
    page.wait_for_url("**/payment")
    _on(site, payment=1, checkout=0)

    page.select_option("#outcome", "insufficient_funds")
    page.click("#pay")
    page.wait_for_url("**/payment/failed?code=insufficient_funds")
    metrics = _on(site, paymentError=1, payment=0)
    assert metrics["paymentErrorsLastHour"] == 1

    with site.client() as client:
        rows = client.get("/api/metrics/payment-errors").json()
    assert len(rows) == 1
    row = rows[0]
    assert row["error_code"] == "insufficient_funds"
    assert row["error_message"] == "Your card has insufficient funds."
    assert row["total_amount"] == 62.99
    assert row["payment_method"] == "card"
    assert row["email"] == "ada@example.com"
    assert row["checkout_items"] == [
        {"productId": "p-1001", "name": "Wireless Headphones", "quantity": 1, "price": 62.99}
    ]
    assert row["error_details"]["errorDetails"]["declineCode"] == "insufficient_funds"
    assert row["user_agent"] and "Chrome" in row["user_agent"]
    assert row["ip_address"] == "127.0.0.0"  # anonymised to its /24 by default

    page.click("#retry")
    page.wait_for_url("**/payment")
    _on(site, payment=1, paymentError=0)
    page.select_option("#outcome", "approve")
    page.click("#pay")
    page.wait_for_url("**/thank-you")
    metrics = _on(site, other=1, payment=0)
    assert metrics["paymentSuccessesLastHour"] == 1
    assert metrics["paymentErrorsLastHour"] == 1
    assert metrics["paymentSuccessRate"] == 1.0

    # The whole journey was one session (one per tab), never ended in between.
    with site.client() as client:
        sessions = client.get("/api/metrics/live-metrics").json()["liveSessions"]
    assert sessions == 1
