"""Custom events of the last 5 minutes, per name (``customEvents`` of live-metrics)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.widget import Widget

from nilemetrics.tui.widgets.ranked_list import RankedList


class CustomEvents(Widget):
    """``add_to_cart   12`` lines, most first; as many as fit, then how many more."""

    def compose(self) -> ComposeResult:
        """The ranked names."""
        yield RankedList(classes="ranking")

    def set_counts(self, counts: dict[str, int]) -> None:
        """Show these counts (the server sends them most first)."""
        items = tuple(counts.items())
        ranking = self.query_one(RankedList)
        ranking.known = True
        if ranking.items != items:
            ranking.items = items
        total = sum(counts.values())
        self.border_subtitle = f"{total} in all" if total else ""

    @property
    def items(self) -> tuple[tuple[str, int], ...]:
        """The names and counts shown."""
        return self.query_one(RankedList).items

    def render(self) -> Text:
        """Nothing of its own: the list draws the lines."""
        return Text()
