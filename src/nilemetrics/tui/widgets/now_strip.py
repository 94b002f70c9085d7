"""Where checking-out sessions are right now: checkout → payment → error page."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from nilemetrics.tui.model import Metrics


def count_text(value: int | None) -> str:
    """A count, or an em dash before the first frame."""
    return "—" if value is None else str(value)


class NowStrip(Widget):
    """One line of live counts (a snapshot, not a funnel: a session is on one page only)."""

    metrics: reactive[Metrics | None] = reactive(None, layout=False)

    def render(self) -> Text:
        """``Now in checkout 3 → payment 2 → error page 1``, with bars when there is room."""
        m = self.metrics
        stages = (
            ("checkout", None if m is None else m.checkout),
            ("payment", None if m is None else m.payment),
            ("error page", None if m is None else m.payment_error),
        )
        fixed = len("Now in ") + sum(len(name) + len(count_text(n)) + 4 for name, n in stages)
        bar_width = max(0, min(12, (self.size.width - fixed) // 3 - 1))
        top = max((n or 0 for _, n in stages), default=0)
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append("Now in ", style="bold")
        for index, (name, n) in enumerate(stages):
            if index:
                line.append(" → ", style="dim")
            line.append(f"{name} ")
            if bar_width and n is not None:
                filled = round(bar_width * n / top) if top else 0
                line.append("█" * filled, style="bold")
                line.append("░" * (bar_width - filled), style="dim")
                line.append(" ")
            line.append(count_text(n), style="bold")
        return line
