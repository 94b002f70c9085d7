"""A count panel that also lists identifiers (categories, offers) busiest first."""

from __future__ import annotations

from textual.app import ComposeResult

from nilemetrics.tui.widgets.count_panel import CountPanel
from nilemetrics.tui.widgets.ranked_list import RankedList


class ListPanel(CountPanel):
    """Live sessions over all identifiers, with the identifiers and their counts."""

    def compose_beside(self) -> ComposeResult:
        """The ranked identifiers to the right of the total."""
        yield RankedList(classes="ranking")

    def set_items(self, counts: dict[str, int]) -> None:
        """Show these identifier counts (already busiest first)."""
        items = tuple(counts.items())
        ranking = self.query_one(".ranking", RankedList)
        ranking.known = True
        if ranking.items != items:
            ranking.items = items

    @property
    def items(self) -> tuple[tuple[str, int], ...]:
        """The identifiers and counts shown."""
        return self.query_one(".ranking", RankedList).items
