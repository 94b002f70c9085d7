"""The panel list: ids, what each panel counts, and what Enter on it lists (no app)."""

from __future__ import annotations

from nilemetrics.tui.model import OWN_PANEL_PAGES, Metrics
from nilemetrics.tui.panels import PANELS, PANELS_BY_ID
from tests.tui.recorded import metrics_frame


def test_panel_ids_are_unique_and_indexed() -> None:
    """Every panel has its own widget id, and the index finds each one."""
    ids = [panel.id for panel in PANELS]
    assert len(set(ids)) == len(ids) == 7
    assert all(PANELS_BY_ID[panel.id] is panel for panel in PANELS)


def test_panels_add_up_to_the_live_sessions() -> None:
    """Each live session is counted by exactly one panel, whatever page type it is on."""
    pages = {"homepage": 9, "category": 3, "offer": 2, "product": 11, "search": 4, "other": 3,
             "product_listing": 7, "checkout": 2, "payment": 1, "payment_error": 1}
    m = Metrics.from_data(metrics_frame(
        homepage=9, categories={"shoes": 1, "hats": 2}, offers={"sale": 2}, checkout=2,
        payment=1, paymentError=1, pages=pages, liveSessions=43).data)
    counts = {panel.id: panel.count(m) for panel in PANELS}
    assert counts == {"homepage": 9, "categories": 3, "offers": 2, "other-pages": 25,
                      "checkout": 2, "payment": 1, "error-page": 1}
    assert sum(counts.values()) == m.live_sessions == 43


def test_fixed_page_types_are_the_ones_with_a_panel_of_their_own() -> None:
    """The panels' page types are exactly those kept out of Other pages: none lost, none twice."""
    fixed = [page for panel in PANELS if panel.pages is not None for page in panel.pages]
    assert len(fixed) == len(set(fixed))
    assert set(fixed) == OWN_PANEL_PAGES
    assert [panel.id for panel in PANELS if panel.pages is None] == ["other-pages"]


def test_enter_lists_the_page_types_the_number_counts() -> None:
    """A fixed panel lists its own types; Other pages lists the types on screen, busiest first."""
    shown = Metrics.from_data({"pages": {"search": 2, "product": 6, "homepage": 4}})
    assert PANELS_BY_ID["categories"].page_types(shown) == ["category"]
    assert PANELS_BY_ID["error-page"].page_types(None) == ["payment_error"]
    assert PANELS_BY_ID["other-pages"].page_types(shown) == ["product", "search"]
    assert PANELS_BY_ID["other-pages"].page_types(None) == []


def test_list_panels_list_what_they_count() -> None:
    """A list panel's items add up to its number (the ranking explains the total)."""
    m = Metrics.from_data(metrics_frame().data)
    listed = [panel for panel in PANELS if panel.items is not None]
    assert [panel.id for panel in listed] == ["categories", "offers", "other-pages"]
    for panel in listed:
        assert panel.items is not None
        assert sum(panel.items(m).values()) == panel.count(m), panel.id
