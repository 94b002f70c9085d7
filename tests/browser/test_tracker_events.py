"""The tracker's custom events, experiments and clicks in Chromium, shop and API on two
origins."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from nilemetrics.server.tables import events_t
from tests.browser.conftest import Site


@contextmanager
def _page_with_tracker(site: Site, context: Any, body: str = "",
                       attributes: str = "") -> Iterator[Any]:
    """A page of its own origin loading /tracker.js from the API, with ``body`` in it."""
    html = (f'<!doctype html><html><body data-page-type="product">{body}'
            f'<script src="{site.api_url}/tracker.js" data-api="{site.api_url}" {attributes}>'
            "</script></body></html>")

    site.other_pages["/p"] = html
    page = context.new_page()
    page.goto(f"{site.other_url}/p")
    page.wait_for_function("window.nilemetrics && window.nilemetrics.version")
    yield page


def _named(site: Site, check: Callable[[list[Any]], bool], timeout: float = 10) -> list[Any]:
    """The custom events stored, once ``check`` holds for them."""
    deadline = time.monotonic() + timeout
    while True:
        found = [row for row in site.rows(events_t) if row.name is not None]
        if check(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_track_sends_a_custom_event_with_its_properties(site: Site, context: Any) -> None:
    """nilemetrics.track(name, props) stores the event; live-metrics counts it by name."""
    with _page_with_tracker(site, context) as page:
        page.evaluate("""nilemetrics.track("add_to_cart", {sku: "tv-55", quantity: 2,
                                                           gift: true})""")
        page.evaluate('nilemetrics.track("add_to_cart")')
        sid = page.evaluate("nilemetrics.sessionId()")
        rows = _named(site, lambda found: len(found) == 2)
    assert [(r.session_id, r.name) for r in rows] == [(sid, "add_to_cart")] * 2
    assert rows[0].payload == {"name": "add_to_cart",
                               "properties": {"sku": "tv-55", "quantity": 2, "gift": True}}
    assert rows[1].payload == {"name": "add_to_cart", "properties": {}}
    site.wait_for(lambda m: m["customEvents"] == {"add_to_cart": 2})


def test_experiment_is_sticky_per_visitor_and_sent_once_per_session(
    site: Site, context: Any
) -> None:
    """experiment() returns one of the variants, the same in a second tab (localStorage);
    each tab's session sends the assignment once, with the same visitor id."""
    variants = '["control", "green", "blue"]'
    with _page_with_tracker(site, context) as page:
        first = page.evaluate(f'nilemetrics.experiment("checkout-button", {variants})')
        again = page.evaluate(f'nilemetrics.experiment("checkout-button", {variants})')
        sid = page.evaluate("nilemetrics.sessionId()")
        other = context.new_page()  # a second tab: another session, the same visitor
        other.goto(page.url)
        other.wait_for_function("window.nilemetrics && window.nilemetrics.version")
        in_other = other.evaluate(f'nilemetrics.experiment("checkout-button", {variants})')
        other_sid = other.evaluate("nilemetrics.sessionId()")
        rows = _named(site, lambda found: len(found) == 2)
    assert first in ("control", "green", "blue")
    assert again == in_other == first
    assert other_sid != sid
    # One each; the two tabs send theirs independently, so in either order.
    assert sorted(r.session_id for r in rows) == sorted([sid, other_sid])
    properties = [r.payload["properties"] for r in rows]
    assert properties[0]["visitor"] == properties[1]["visitor"] != sid
    assert [(p["experiment"], p["variant"]) for p in properties] == [
        ("checkout-button", first)] * 2


def test_experiment_falls_back_to_the_session_without_local_storage(
    site: Site, browser: Any
) -> None:
    """With localStorage refused, the variant sticks to the tab's session instead."""
    ctx = browser.new_context()
    ctx.add_init_script(
        "Object.defineProperty(window, 'localStorage', {get() { throw new Error('off'); }})")
    try:
        with _page_with_tracker(site, ctx) as page:
            variants = [page.evaluate('nilemetrics.experiment("banner", ["a", "b"])')
                        for _ in range(5)]
            page.reload()
            page.wait_for_function("window.nilemetrics && window.nilemetrics.version")
            after_reload = page.evaluate('nilemetrics.experiment("banner", ["a", "b"])')
            sid = page.evaluate("nilemetrics.sessionId()")
            [row] = _named(site, lambda found: len(found) == 1)
    finally:
        ctx.close()
    assert len(set(variants)) == 1 and after_reload == variants[0]
    assert row.payload["properties"] == {"experiment": "banner", "variant": variants[0],
                                         "visitor": sid}


def test_variants_are_spread_over_visitors(site: Site, browser: Any) -> None:
    """Forty fresh visitors are not all put in one variant (random, not fixed)."""
    seen = set()
    for _ in range(40):
        ctx = browser.new_context()
        try:
            with _page_with_tracker(site, ctx) as page:
                seen.add(page.evaluate('nilemetrics.experiment("spread", ["a", "b"])'))
        finally:
            ctx.close()
        if seen == {"a", "b"}:
            break
    assert seen == {"a", "b"}


_BUTTONS = ('<main class="shop wide"><div id="basket"><button class="pay big">Pay '
            'jane@example.com now</button></div></main>'
            '<a class="logo" style="position:fixed;right:0;bottom:0">Home</a>')


def test_data_clicks_records_the_element_path_and_a_grid_cell(
    site: Site, context: Any
) -> None:
    """With data-clicks: each click's element path and grid cell, no text; without: none."""
    with _page_with_tracker(site, context, _BUTTONS, "data-clicks") as page:
        page.set_viewport_size({"width": 1000, "height": 800})
        page.mouse.click(5, 790)  # bottom left, below the content
        page.click("button.pay", position={"x": 2, "y": 2})
        box = page.locator("a.logo").bounding_box()
        page.mouse.click(box["x"] + box["width"] - 1, box["y"] + box["height"] - 1)
        rows = _named(site, lambda found: len(found) == 3)
    properties = [row.payload["properties"] for row in rows]
    # Below the content the target is the root element.
    assert [p["path"] for p in properties] == ["html", "div#basket>button.pay", "a.logo"]
    assert [(p["x"], p["y"]) for p in properties][2] == (9, 9)
    assert (properties[0]["x"], properties[0]["y"]) == (0, 9)
    assert all(p["page"] == "/p" and p["pageType"] == "product" for p in properties)
    assert "jane" not in json.dumps([row.payload for row in rows])  # no text content

    with _page_with_tracker(site, context, _BUTTONS) as page:
        page.click("button.pay")
        page.evaluate('nilemetrics.track("done")')
        after = _named(site, lambda found: len(found) == 4)
    assert [row.name for row in after] == ["click", "click", "click", "done"]
