"""The dashboard on a real server, over the real WebSocket."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from nilemetrics.tui.app import NileMetricsApp
from nilemetrics.tui.config import DashboardConfig
from nilemetrics.tui.widgets.error_table import ErrorTable
from nilemetrics.tui.widgets.status_bar import StatusBar
from tests.support import LiveServer
from tests.tui.recorded import CHROME_WINDOWS, screen_text, wait_until
from tests.tui.test_figures import panel_sum_on_screen

P = "/api/metrics"


def _post(client: httpx.Client, path: str, body: dict[str, object]) -> httpx.Response:
    response = client.post(f"{P}/{path}", json=body)
    assert response.status_code == 200, response.text
    return response


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_journey_shows_numbers_and_error_row(server: LiveServer, tmp_path: Path) -> None:
    """A shopper's journey posted over HTTP appears in the panels and the error table."""
    config = DashboardConfig(url=server.base_url, token=server.token, export_dir=tmp_path)
    app = NileMetricsApp(config)
    headers = {"User-Agent": CHROME_WINDOWS}
    async with app.run_test(size=(160, 48)) as pilot:
        status = app.query_one(StatusBar)
        await wait_until(pilot, lambda: status.state == "connected", timeout=10,
                         what="connected")
        with httpx.Client(base_url=server.base_url, timeout=10, headers=headers) as client:
            browsing = client.post(f"{P}/session/start").json()["sessionId"]
            _post(client, "track/page-visit", {"sessionId": browsing, "pageType": "homepage"})
            lister = client.post(f"{P}/session/start").json()["sessionId"]
            _post(client, "track/page-visit", {"sessionId": lister,
                                               "pageType": "product_listing"})
            buyer = client.post(f"{P}/session/start",
                                json={"email": "e2e@example.com", "phone": "+4930123"}
                                ).json()["sessionId"]
            _post(client, "track/page-visit",
                  {"sessionId": buyer, "pageType": "category", "pageIdentifier": "teapots"})
            _post(client, "track/checkout-start", {
                "sessionId": buyer, "totalAmount": 59.97, "paymentMethod": "card",
                "checkoutItems": [{"name": "Cast-iron teapot", "quantity": 1, "price": 59.97}],
            })
            _post(client, "track/page-visit", {"sessionId": buyer, "pageType": "payment"})
            _post(client, "track/payment-start", {"sessionId": buyer, "paymentMethod": "card"})
            _post(client, "track/payment-error", {
                "sessionId": buyer,
                "errorDetails": {"errorCode": "card_declined",
                                 "errorMessage": "Your card was declined",
                                 "userAgent": CHROME_WINDOWS},
            })

        def on_screen() -> bool:
            text = screen_text(app)
            return ("e2e@example.com" in text and "59.97" in text
                    and "3 live" in text and "card_declined" in text
                    and "Last hour 3 sessions → 1 checkout" in text)

        await wait_until(pilot, on_screen, timeout=15, what="journey on screen")
        assert app.metrics.homepage == 1
        assert app.metrics.live_sessions == 3
        # Every live session is on a panel: the digits on screen add up to the header.
        await pilot.pause(0.1)
        assert panel_sum_on_screen(app) == 3
        assert "product_li" in screen_text(app)
        assert "Last hour 3 sessions → 1 checkout −67% → 1 payment −0% → 0 paid −100%" in (
            screen_text(app))
        assert "Payment errors, last hour: 1" in screen_text(app)
        row = app.query_one(ErrorTable).rows_shown[0]
        assert (row.email, row.amount_text, row.error_code) == (
            "e2e@example.com", "59.97", "card_declined")
        assert row.browser == "Chrome 131 · Windows"
        assert row.items_text == "1 · Cast-iron teapot 59.97"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_wrong_token_shows_auth_refused(server: LiveServer, tmp_path: Path) -> None:
    """A wrong token on the real server ends in 'auth refused', not a retry loop."""
    config = DashboardConfig(url=server.base_url, token="not-the-token", export_dir=tmp_path)
    app = NileMetricsApp(config)
    async with app.run_test(size=(80, 24)) as pilot:
        status = app.query_one(StatusBar)
        await wait_until(pilot, lambda: status.state == "refused", timeout=10)
        # The state changes before the next repaint: wait for what the user sees.
        await wait_until(pilot, lambda: "auth refused" in screen_text(app), timeout=5,
                         what="'auth refused' on screen")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_ctrl_c_quits_on_a_live_feed(server: LiveServer, tmp_path: Path) -> None:
    """Connected to a real server, Ctrl-C ends the app at once (the feed worker too)."""
    config = DashboardConfig(url=server.base_url, token=server.token, export_dir=tmp_path)
    app = NileMetricsApp(config)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.query_one(StatusBar).state == "connected",
                         timeout=10, what="connected")
        await pilot.press("ctrl+c")
        await wait_until(pilot, lambda: not app.is_running, timeout=2, what="quit")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_page_panel_lists_sessions_from_the_server(server: LiveServer,
                                                         tmp_path: Path) -> None:
    """Enter on the Categories panel lists, from the real server, who is on which category."""
    config = DashboardConfig(url=server.base_url, token=server.token, export_dir=tmp_path)
    app = NileMetricsApp(config)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.query_one(StatusBar).state == "connected",
                         timeout=10, what="connected")
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            sid = client.post(f"{P}/session/start",
                              json={"email": "drill@example.com"}).json()["sessionId"]
            _post(client, "track/page-visit", {"sessionId": sid, "pageType": "homepage"})
            _post(client, "track/page-visit",
                  {"sessionId": sid, "pageType": "category", "pageIdentifier": "teapots"})
        await wait_until(pilot, lambda: app.metrics.category_total == 1, timeout=10)
        app.query_one("#categories").focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: "drill@example.com" in screen_text(app), timeout=10,
                         what="the session listed")
        text = screen_text(app)
        assert "category · teapots" in text and "homepage" in text
        assert "1 live · on category" in text
