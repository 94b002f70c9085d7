"""The checkout funnel now (checkout → payment → errors) and the last hour's success rate."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from nilemetrics.tui.model import Metrics


def percent(rate: float | None) -> str:
    """``87.5%``, or an em dash when there is no rate."""
    return "—" if rate is None else f"{rate * 100:.1f}%"


class Funnel(Widget):
    """One line: where checking-out sessions are now, and how payments went in the last hour."""

    metrics: reactive[Metrics] = reactive(Metrics, layout=False)

    def render(self) -> Text:
        """Stages with bars scaled to the largest, then the hour's figures."""
        m = self.metrics
        stages = (("Checkout", m.checkout), ("Payment", m.payment), ("Errors", m.payment_error))
        hour = (
            f"  │  Paid (1h) {percent(m.payment_success_rate)}"
            f" · {m.payment_successes_last_hour} ok · {m.payment_failures_last_hour} failed"
            f" · {m.checkouts_last_hour} checkouts"
        )
        fixed = 7 + sum(len(name) + len(str(n)) + 2 for name, n in stages) + 6 + len(hour)
        bar_width = max(0, min(12, (self.size.width - fixed) // 3))
        top = max((n for _, n in stages), default=0)
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append("Funnel ", style="bold")
        for index, (name, n) in enumerate(stages):
            if index:
                line.append(" → ", style="dim")
            line.append(f"{name} ")
            if bar_width:
                filled = round(bar_width * n / top) if top else 0
                line.append("█" * filled, style="bold")
                line.append("░" * (bar_width - filled), style="dim")
                line.append(" ")
            line.append(str(n), style="bold")
        line.append(hour)
        return line
