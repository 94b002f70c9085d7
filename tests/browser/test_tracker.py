"""The tracker script in Chromium: sessions per tab, the end of a session, privacy,
an API outage, History API navigation and heartbeats. The shop and the API are on
different origins throughout."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from nilemetrics.server.tables import checkouts_t, errors_t, events_t, sessions_t, visits_t
from tests.browser.conftest import Site


def _sessions_live(site: Site, n: int, timeout: float = 10.0) -> dict[str, Any]:
    return site.wait_for(lambda m: m["liveSessions"] == n, timeout=timeout)


def _kinds(site: Site) -> Counter[str]:
    return Counter(row.event_type for row in site.rows(events_t))


def test_one_session_per_tab_across_pages_and_reloads(site: Site, context: Any) -> None:
    """Clicking through the shop and reloading stay one session; a second tab is another."""
    page = context.new_page()
    page.goto(site.shop_url + "/")
    _sessions_live(site, 1)
    page.click("header >> text=Books")
    page.wait_for_url("**/category/books")
    page.click("header >> text=Toys")
    page.wait_for_url("**/category/toys")
    page.reload()
    site.wait_for(lambda m: m["categories"] == {"toys": 1} and m["liveSessions"] == 1)
    assert len(site.rows(sessions_t)) == 1
    assert _kinds(site)["session-end"] <= 1  # a reload may end and revive, never split

    other = context.new_page()
    other.goto(site.shop_url + "/offer/bundle-deal")
    metrics = site.wait_for(lambda m: m["liveSessions"] == 2 and m["offers"] != {})
    assert metrics["offers"] == {"bundle-deal": 1} and metrics["categories"] == {"toys": 1}
    assert len({row.session_id for row in site.rows(sessions_t)}) == 2
    assert _kinds(site)["session-start"] == 2


def test_closing_the_tab_ends_the_session(site: Site, context: Any) -> None:
    """The pagehide beacon ends the session at once: no wait for the 30-minute timeout."""
    page = context.new_page()
    page.goto(site.shop_url + "/category/electronics")
    _sessions_live(site, 1)
    page.close()
    metrics = _sessions_live(site, 0, timeout=5)
    assert metrics["categories"] == {}
    [session] = site.rows(sessions_t)
    assert session.is_active is False and session.ended_at is not None
    [visit] = site.rows(visits_t)
    assert visit.exited_at is not None  # the open page visit was closed too


# Exactly what the shop's existing TypeScript client does (DESIGN.md "Wire contract").
_EXISTING_CLIENT = """<!doctype html><html><body><script>
const API = "%(api)s/api/metrics";
async function post(path, body) {
  const r = await fetch(API + path, {method: "POST", credentials: "include",
    headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}
window.journey = async () => {
  const {sessionId} = await post("/session/start", {userId: "u-7", email: "old@example.com"});
  const answers = [];
  answers.push(await post("/track/page-visit", {sessionId, pageType: "offer",
    pageIdentifier: "black-friday", pageUrl: location.href}));
  answers.push(await post("/session/heartbeat", {sessionId}));
  answers.push(await post("/track/checkout-start", {sessionId, totalAmount: 59.97,
    checkoutItems: [{productId: "p-1", quantity: 3, price: 19.99}], paymentMethod: "card"}));
  answers.push(await post("/track/payment-start", {sessionId}));
  answers.push(await post("/track/payment-error", {sessionId, errorDetails: {
    errorCode: "card_declined", errorMessage: "Your card was declined.",
    errorDetails: {declineCode: "generic_decline"}, timestamp: new Date().toISOString(),
    userAgent: navigator.userAgent, url: location.href}}));
  answers.push(await post("/track/payment-success", {sessionId}));
  return {sessionId, answers};
};
window.leave = (sessionId) => navigator.sendBeacon(API + "/session/end",
  new Blob([JSON.stringify({sessionId})], {type: "application/json"}));
</script></body></html>"""


def test_existing_client_calls_are_accepted_cross_origin(site: Site, context: Any) -> None:
    """fetch with credentials and JSON, and an application/json sendBeacon Blob, work."""
    html = _EXISTING_CLIENT % {"api": site.api_url}

    site.other_pages["/legacy"] = html
    page = context.new_page()
    page.goto(f"{site.other_url}/legacy")
    result = page.evaluate("journey()")
    assert result["answers"] == [{"success": True}] * 6
    sid = result["sessionId"]
    metrics = site.wait_for(lambda m: m["offers"] == {"black-friday": 1})
    assert metrics["paymentErrorsLastHour"] == 1 and metrics["paymentSuccessesLastHour"] == 1
    [checkout] = site.rows(checkouts_t)
    assert (checkout.session_id, checkout.email, str(checkout.total_amount)) == (
        sid, "old@example.com", "59.97"
    )
    assert checkout.status == "completed"
    [error] = site.rows(errors_t)
    assert error.error_code == "card_declined"

    assert page.evaluate("(sid) => leave(sid)", sid) is True
    _sessions_live(site, 0, timeout=5)
    [session] = site.rows(sessions_t)
    assert session.session_id == sid and session.ended_at is not None


def test_global_privacy_control_sends_nothing_personal(site: Site, browser: Any) -> None:
    """With GPC on, no email, IP or user agent is stored; the session still counts."""
    context = browser.new_context()
    context.add_init_script("Object.defineProperty(Navigator.prototype, "
                            "'globalPrivacyControl', {get: () => true})")
    sent: list[str] = []
    context.on("request", lambda request: sent.append(
        f"{request.url} {request.post_data or ''}") if "/api/metrics" in request.url else None)
    page = context.new_page()
    try:
        page.goto(site.shop_url + "/offer/black-friday")
        page.click("[data-add='p-1007']")
        page.wait_for_url("**/cart")
        page.click("#to-checkout")
        page.wait_for_url("**/checkout")
        page.fill("#email", "private@example.com")
        page.click("#to-payment")
        page.wait_for_url("**/payment")
        page.select_option("#outcome", "expired_card")
        page.click("#pay")
        page.wait_for_url("**/payment/failed?code=expired_card")
        metrics = site.wait_for(lambda m: m["paymentError"] == 1)
        assert metrics["liveSessions"] == 1
    finally:
        context.close()

    assert sent and all("privacy=1" in line for line in sent)
    assert not any("private@example.com" in line for line in sent)
    [session] = site.rows(sessions_t)
    assert (session.email, session.user_id, session.ip_address, session.user_agent) == (
        None, None, None, None
    )
    [checkout] = site.rows(checkouts_t)
    assert checkout.email is None and str(checkout.total_amount) == "83.30"
    [error] = site.rows(errors_t)
    assert (error.error_code, error.ip_address, error.user_agent) == ("expired_card", None, None)
    assert "userAgent" not in json.dumps(error.error_details) or (
        error.error_details.get("userAgent") is None
    )
    for row in site.rows(events_t):
        assert "private@example.com" not in json.dumps(row.payload)


def test_opt_out_makes_later_sessions_anonymous(site: Site, context: Any) -> None:
    """optOut() holds for the browser (localStorage); identify() then sends nothing."""
    first = context.new_page()
    first.goto(site.shop_url + "/")
    first.evaluate("nilemetrics.optOut()")
    first.close()
    second = context.new_page()
    second.goto(site.shop_url + "/category/fashion")
    second.evaluate("nilemetrics.identify({email: 'out@example.com', userId: 'u-1'})")
    site.wait_for(lambda m: m["categories"] == {"fashion": 1})
    sid = second.evaluate("nilemetrics.sessionId()")
    [row] = [r for r in site.rows(sessions_t) if r.session_id == sid]
    assert (row.email, row.user_id, row.ip_address, row.user_agent) == (None, None, None, None)

    second.evaluate("nilemetrics.optIn()")
    second.evaluate("nilemetrics.identify({email: 'back@example.com'})")
    second.wait_for_function("JSON.parse(sessionStorage.getItem('nm:q')).length === 0")
    [row] = [r for r in site.rows(sessions_t) if r.session_id == sid]
    assert row.email == "back@example.com"


def test_events_during_an_api_outage_arrive_once_afterwards(site: Site, context: Any) -> None:
    """The API goes away for a few seconds; queued events (kept in sessionStorage across
    a page change) arrive when it is back, each once, and the shop page never breaks."""
    page = context.new_page()
    page.goto(site.shop_url + "/")
    site.wait_for(lambda m: m["homepage"] == 1)

    site.proxy.stop()
    page.click("header >> text=Sports")  # the tracker script comes from the browser cache
    page.wait_for_url("**/category/sports")
    page.evaluate("nilemetrics.trackCheckoutStart({checkoutItems: [{productId: 'p-1005'}],"
                  " totalAmount: 19.95, paymentMethod: 'card'})")
    page.click("[data-add='p-1005']")  # another page load while still down
    page.wait_for_url("**/cart")
    page.wait_for_timeout(1500)  # a few failed attempts
    queued = page.evaluate("JSON.parse(sessionStorage.getItem('nm:q')).map(e => e.type)")
    assert queued == ["page-visit", "checkout-start", "page-visit"]
    assert site.live()["homepage"] == 1  # nothing arrived yet

    site.proxy.start()
    site.wait_for(lambda m: m["other"] == 1 and m["homepage"] == 0, timeout=40)
    page.wait_for_function("JSON.parse(sessionStorage.getItem('nm:q')).length === 0")
    kinds = _kinds(site)
    assert kinds["page-visit"] == 3 and kinds["checkout-start"] == 1
    assert kinds["session-start"] == 1
    visits = [(v.page_type, v.page_identifier) for v in site.rows(visits_t)]
    assert visits == [("homepage", None), ("category", "sports"), ("other", None)]
    assert len(site.rows(checkouts_t)) == 1


def test_history_api_navigation_is_a_page_visit(site: Site, context: Any) -> None:
    """A single-page app: pushState and back each record the page the body now names."""
    page = context.new_page()
    page.goto(site.shop_url + "/")
    site.wait_for(lambda m: m["homepage"] == 1)
    page.evaluate("""() => {
        document.body.dataset.pageType = 'offer';
        document.body.dataset.pageId = 'bundle-deal';
        history.pushState({}, '', '/offer/bundle-deal');
    }""")
    site.wait_for(lambda m: m["offers"] == {"bundle-deal": 1} and m["homepage"] == 0)
    page.evaluate("""() => {
        document.body.dataset.pageType = 'homepage';
        delete document.body.dataset.pageId;
        history.back();
    }""")
    site.wait_for(lambda m: m["homepage"] == 1 and m["offers"] == {})
    page.evaluate("history.replaceState({}, '', '/?utm=x')")  # a new query: a new visit
    site.wait_for(lambda m: _kinds(site)["page-visit"] == 4 and m["homepage"] == 1)
    urls = [v.page_url.removeprefix(site.shop_url) for v in site.rows(visits_t)]
    assert urls == ["/", "/offer/bundle-deal", "/", "/?utm=x"]
    page.evaluate("history.replaceState({step: 2}, '')")  # same URL: not a visit
    page.wait_for_timeout(300)
    assert _kinds(site)["page-visit"] == 4


def test_heartbeats_while_visible_and_the_end_after_long_hidden(
    site: Site, context: Any
) -> None:
    """A heartbeat every 30 s while visible; hidden for 5 minutes ends the session;
    coming back revives it on the same page."""
    context.clock.install()
    page = context.new_page()
    page.goto(site.shop_url + "/category/books")
    site.wait_for(lambda m: m["categories"] == {"books": 1})
    for _ in range(3):
        page.clock.run_for(30_000)
        page.wait_for_function("JSON.parse(sessionStorage.getItem('nm:q')).length === 0")
    assert _kinds(site)["session-heartbeat"] == 3

    page.evaluate("""() => {
        Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
        Object.defineProperty(document, 'visibilityState', {configurable: true,
                                                            get: () => 'hidden'});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    page.clock.run_for(6 * 60_000)
    site.wait_for(lambda m: m["liveSessions"] == 0)
    assert _kinds(site)["session-heartbeat"] == 3  # none while hidden

    page.evaluate("""() => {
        delete document.hidden; delete document.visibilityState;
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    page.clock.run_for(1_000)
    site.wait_for(lambda m: m["categories"] == {"books": 1} and m["liveSessions"] == 1)
    assert len(site.rows(sessions_t)) == 1


def test_bad_calls_never_throw_and_a_rejected_event_is_dropped_alone(
    site: Site, context: Any
) -> None:
    """Wrong arguments do not throw into the page; an event the server refuses (4xx)
    is dropped on its own and the events around it still arrive."""
    page = context.new_page()
    page.goto(site.shop_url + "/")
    site.wait_for(lambda m: m["homepage"] == 1)
    results = page.evaluate("""() => [
        nilemetrics.trackCheckoutStart(),
        nilemetrics.trackPaymentError(null),
        nilemetrics.identify(),
    ]""")
    assert results == [None, None, None]
    page.evaluate("""() => {
        nilemetrics.trackPageVisit({pageType: 'no such page!'});  // not a slug: 422
        nilemetrics.trackCategoryPage('books');
        nilemetrics.trackPageVisit({pageType: 'offer'});  // offer without its id: 422
        nilemetrics.trackOfferPage('bundle-deal');
    }""")
    page.wait_for_function("JSON.parse(sessionStorage.getItem('nm:q')).length === 0")
    visits = [(v.page_type, v.page_identifier) for v in site.rows(visits_t)]
    assert visits == [("homepage", None), ("category", "books"), ("offer", "bundle-deal")]
    site.wait_for(lambda m: m["offers"] == {"bundle-deal": 1})

    # Over the server's 64 KiB cap (and fetch keepalive's): refused with 413, dropped,
    # and the queue goes on.
    page.evaluate("""() => {
        const items = Array.from({length: 200}, (_, i) => ({sku: 'x'.repeat(400) + i}));
        nilemetrics.trackCheckoutStart({checkoutItems: items, totalAmount: 1});
        nilemetrics.trackCheckoutPage();
    }""")
    page.wait_for_function("JSON.parse(sessionStorage.getItem('nm:q')).length === 0")
    site.wait_for(lambda m: m["checkout"] == 1)
    assert site.rows(checkouts_t) == []


def test_calls_queued_before_the_script_loads(site: Site, context: Any) -> None:
    """window.nilemetrics = [[method, ...args]] set before the script runs is replayed;
    the page tracked by hand is not also tracked automatically."""
    context.add_init_script("window.nilemetrics = [['trackOfferPage', 'black-friday']]")
    page = context.new_page()
    page.goto(site.shop_url + "/")
    site.wait_for(lambda m: m["offers"] == {"black-friday": 1} and m["homepage"] == 0)
    page.wait_for_function("JSON.parse(sessionStorage.getItem('nm:q')).length === 0")
    page.wait_for_timeout(300)
    assert [v.page_type for v in site.rows(visits_t)] == ["offer"]


def test_back_button_counts_the_page_shown_again(site: Site, context: Any) -> None:
    """Back to a page (restored from the back/forward cache or loaded again): the
    session is on that page again, still one session."""
    page = context.new_page()
    page.goto(site.shop_url + "/")
    site.wait_for(lambda m: m["homepage"] == 1)
    page.click("header >> text=Electronics")
    site.wait_for(lambda m: m["categories"] == {"electronics": 1})
    page.go_back()
    site.wait_for(lambda m: m["homepage"] == 1 and m["categories"] == {}
                  and m["liveSessions"] == 1)
    page.go_forward()
    site.wait_for(lambda m: m["categories"] == {"electronics": 1} and m["liveSessions"] == 1)
    assert len(site.rows(sessions_t)) == 1
