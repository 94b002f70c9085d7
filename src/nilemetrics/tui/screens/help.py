"""Help on `?`: what every figure on the dashboard counts, and the keys."""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

FIGURES: tuple[tuple[str, str], ...] = (
    ("Header", "server host:port, connection state, live sessions now (“42 live”), "
     "data … ago (time since the last frame from the server, heartbeats included; "
     "while paused, the age of what is frozen on screen), the local time."),
    ("live", "a session is live while its last event is within the server's live window "
     "(90 s by default) and it has reported a page. A session that only started is not "
     "live. Each live session is on exactly one page, so the page panels add up to it."),
    ("Homepage, Categories, Offers", "live sessions on those pages now; categories and "
     "offers list their pages, busiest first."),
    ("Other pages", "live sessions on every other page type the server reports (product, "
     "search, other, and any type a shop sends, e.g. product_listing), busiest first."),
    ("Checkout, Payment, Error page", "live sessions on the checkout page, the payment "
     "page and the payment-error PAGE now. Not counts of payments or errors."),
    ("sparkline", "under each panel: that panel's number over the last 10 minutes, "
     "one bar per 10 s, oldest left; the border says the span (“−10 min … now”). On "
     "connecting, the minutes before come from the server's history (one value per "
     "minute: the most sessions seen on those pages in it); a server without history "
     "starts them when the dashboard opens."),
    ("Now in", "checkout → payment → error page: the same three live counts side by side. "
     "A snapshot of where sessions are, not a funnel."),
    ("Last hour", "the conversion funnel of one cohort: sessions → checkout → payment → "
     "paid. sessions: sessions active in the last hour that reported a page; checkout: of "
     "them, those that started a checkout in the hour; payment: of those, the ones whose "
     "checkout reached payment; paid: the ones whose checkout was paid. −N% is the "
     "drop-off from the step before."),
    ("Payments, last hour", "payment errors: every failed attempt in the hour (a retry "
     "counts again), and how many of them in the last minute (above the alert threshold "
     "the line turns red and the terminal bell rings once). N% paid: of the checkouts whose "
     "payment reached an outcome in the hour, the share that paid; paid: checkouts paid in "
     "the hour; failed and not paid since: checkouts whose latest outcome is a failure (it "
     "drops when a customer retries and pays); checkouts started: checkouts begun in the "
     "hour."),
    ("Payment errors table", "the error rows the server sent (at most 50, newest first); "
     "“latest 50 of 92” when the hour had more. Sorted as the title says."),
    ("Top error codes", "error codes among the rows received: count, share of those rows, "
     "and when each was last seen."),
    ("Events, last 5 min", "custom events (track/event, the tracker's track()) per name in "
     "the last 5 minutes, most first; shown with the top error codes."),
    ("2 History", "from the server's history: live sessions (the most in each bucket), page "
     "visits, payment errors and payment successes per bucket, for the last 1h (1-minute "
     "buckets), 24h (5 min), 7d or 30d (1 h). The line under the charts reads the bucket "
     "under the cursor: also sessions started, checkouts, errors per code, amounts paid "
     "and failed."),
    ("REPLAY 03:10", "the live screen as it was when the minute 03:10 ended: the numbers "
     "the server sampled then, the error table as it stood then (the hour up to then), "
     "the sparklines of the 10 minutes before. Nothing moves: ←/→ step a minute."),
    ("3 Customer", "a person's sessions (newest first) by email, phone or user id, and one "
     "session's journey: each page with the time on it, each checkout with every failed "
     "attempt, and the page they left on."),
    ("4 Report", "the numbers of `nilemetrics report` for the last 1h/24h/7d/30d, from the "
     "server: average time per page type, the funnel with drop-off, abandonment points "
     "(the last page of sessions that ended in the period with a checkout started and "
     "never paid), error codes with "
     "the amounts at stake and recovered, retries and success rates."),
)

KEYS: tuple[tuple[str, str], ...] = (
    ("↑ ↓  PgUp PgDn", "move in the payment-error table (the cursor follows the newest row "
     "until you move it)"),
    ("Enter / click", "details of the selected error"),
    ("Tab, then Enter", "on a page panel (or a click on it): the live sessions behind it, "
     "with the time on the page, email if known and the previous page"),
    ("s / S", "sort the table by the next column / reverse the order (or click a header)"),
    ("/", "filter errors by email, code or message (Esc clears)"),
    ("p", "pause updates (everything on screen freezes) / resume with the latest state"),
    ("j", "the selected error's customer: their journey on the Customer screen"),
    ("1 2 3 4", "Live, History, Customer, Report (on Customer, Esc first leaves the box)"),
    ("History: h d w m", "last 1h / 24h / 7d / 30d; ←/→ move the cursor (Shift: 10 "
     "buckets), Enter replays the cursor's minute (a longer bucket: its first minute)"),
    ("Replay: ←/→, Esc", "a minute back / on; back to live (`watch --at` starts here)"),
    ("c", "show or hide the top error codes and the custom events"),
    ("e", "export the visible error rows to a CSV file"),
    ("t", "switch between the dark and light theme"),
    ("Ctrl+P", "command palette (themes, screenshot, quit)"),
    ("?", "this help"),
    ("q / Ctrl+C", "quit"),
)


def _table(rows: tuple[tuple[str, str], ...]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for key, what in rows:
        table.add_row(key, what)
    return table


class HelpScreen(ModalScreen[None]):
    """What the figures mean and the keys; any of Escape, q or ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark,enter", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        """The figures, then the keys, scrollable on a small terminal."""
        with VerticalScroll(id="help-box") as box:
            box.border_title = "What the dashboard shows"
            box.border_subtitle = "↑↓ scroll · Esc closes"
            yield Static(Group(
                Text("Figures", style="bold underline"), _table(FIGURES), Text(""),
                Text("Keys", style="bold underline"), _table(KEYS),
            ), id="help-text")

    def on_mount(self) -> None:
        """Let the arrow keys scroll at once."""
        self.query_one("#help-box", VerticalScroll).focus()

    async def action_dismiss(self, result: None = None) -> None:
        """Close the screen."""
        self.dismiss(result)
