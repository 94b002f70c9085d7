"""The last hour's conversion funnel: sessions → checkout → payment → paid."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from nilemetrics.tui.model import Metrics


def drop_text(before: int, after: int) -> str:
    """The drop-off from one step to the next: ``−83%`` (``−0%`` when none is lost)."""
    if before <= 0:
        return ""
    return f"−{round(100 * (before - after) / before)}%"


class Funnel(Widget):
    """One line: one cohort of sessions through the hour's steps, with the drop-off per step."""

    metrics: reactive[Metrics | None] = reactive(None, layout=False)

    def render(self) -> Text:
        """``Last hour 120 sessions → 20 checkout −83% → 16 payment −20% → 14 paid −13%``."""
        m = self.metrics
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append("Last hour ", style="bold")
        if m is None:
            line.append("sessions — → checkout — → payment — → paid —")
            return line
        steps = (
            ("sessions", m.sessions_last_hour),
            ("checkout", m.checkout_sessions_last_hour),
            ("payment", m.payment_sessions_last_hour),
            ("paid", m.paid_sessions_last_hour),
        )
        previous: int | None = None
        for name, n in steps:
            if previous is not None:
                line.append(" → ", style="dim")
            line.append(str(n), style="bold")
            line.append(f" {name}")
            if previous is not None and previous > 0:
                line.append(f" {drop_text(previous, n)}", style="dim")
            previous = n
        return line
