"""The last hour's payment figures: errors (and the last minute's), outcomes paid."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from nilemetrics.tui.model import Metrics


def percent(rate: float | None) -> str:
    """``87.5%``, or an em dash when there is no rate."""
    return "—" if rate is None else f"{rate * 100:.1f}%"


class PaymentLine(Widget):
    """One line of hour figures; red (``-alert``) while errors per minute spike."""

    metrics: reactive[Metrics | None] = reactive(None, layout=False)
    errors_last_minute: reactive[int | None] = reactive(None, layout=False)
    alert: reactive[bool] = reactive(False)

    def watch_alert(self, alert: bool) -> None:
        """The .tcss turns an alerting line red."""
        self.set_class(alert, "-alert")

    def render(self) -> Text:
        """The long form when it fits, else the short one."""
        m = self.metrics
        line = Text(no_wrap=True, overflow="ellipsis")
        if m is None:
            line.append("Payments, last hour ", style="bold")
            line.append("—")
            return line
        minute = "—" if self.errors_last_minute is None else str(self.errors_last_minute)
        rate = percent(m.payment_success_rate)
        long = (
            f"{m.payment_errors_last_hour} payment errors ({minute} in the last minute)"
            f" · {rate} of payment outcomes paid: {m.payment_successes_last_hour} paid,"
            f" {m.payment_failures_last_hour} failed and not paid since"
            f" · {m.checkouts_last_hour} checkouts started"
        )
        short = (
            f"{m.payment_errors_last_hour} errors ({minute} last min) · {rate} paid:"
            f" {m.payment_successes_last_hour} paid, {m.payment_failures_last_hour} failed unpaid"
        )
        label = "Payments, last hour "
        body = long if len(label) + len(long) <= self.size.width - 2 else short
        if len(label) + len(body) > self.size.width - 2:
            label = "Payments 1h "
        line.append(label, style="bold")
        line.append(body)
        return line
