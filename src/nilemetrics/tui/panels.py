"""The page panels, listed once: the live screen composes, fills and drills down from this."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nilemetrics.tui.model import OWN_PANEL_PAGES, Metrics


@dataclass(frozen=True, slots=True)
class PanelSpec:
    """One page panel: its widget id, its title, its number and the page types behind it."""

    id: str
    title: str
    count: Callable[[Metrics], int]
    """How the panel's number is read from a metrics frame."""

    pages: tuple[str, ...] | None
    """Page types whose live sessions it counts; ``None``: every type without a panel of
    its own, as the numbers on screen list them."""

    items: Callable[[Metrics], dict[str, int]] | None = None
    """For a list panel, its identifiers and their counts, busiest first."""

    prominent: bool = False
    """A third of the width below 150 columns (the others a quarter)."""

    def count_pages(self, pages: dict[str, int]) -> int:
        """The panel's number from live sessions per page type (a history point's ``pages``)."""
        if self.pages is not None:
            return sum(pages.get(page, 0) for page in self.pages)
        return sum(n for page, n in pages.items() if page not in OWN_PANEL_PAGES)

    def page_types(self, shown: Metrics | None) -> list[str]:
        """The page types Enter lists the sessions of, given the numbers on screen."""
        if self.pages is not None:
            return list(self.pages)
        return list(shown.other_pages) if shown is not None else []


#: Every live session is on exactly one page, so the panels add up to the live
#: count in the header. Their order is the order on screen.
PANELS: tuple[PanelSpec, ...] = (
    PanelSpec("homepage", "Homepage", lambda m: m.homepage, ("homepage",), prominent=True),
    PanelSpec("categories", "Categories", lambda m: m.category_total, ("category",),
              items=lambda m: m.categories, prominent=True),
    PanelSpec("offers", "Offers", lambda m: m.offer_total, ("offer",),
              items=lambda m: m.offers, prominent=True),
    PanelSpec("other-pages", "Other pages", lambda m: m.other_total, None,
              items=lambda m: m.other_pages),
    PanelSpec("checkout", "Checkout", lambda m: m.checkout, ("checkout",)),
    PanelSpec("payment", "Payment", lambda m: m.payment, ("payment",)),
    PanelSpec("error-page", "Error page", lambda m: m.payment_error, ("payment_error",)),
)

#: The panels by widget id.
PANELS_BY_ID: dict[str, PanelSpec] = {panel.id: panel for panel in PANELS}
