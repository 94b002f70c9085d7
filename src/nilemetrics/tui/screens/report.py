"""Report: time per page, the funnel, abandonment, error codes and retries for a period.

The numbers are the server's ``GET /report``, built by the same code as
``nilemetrics report``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, ClassVar, cast

from rich.table import Table
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, VerticalScroll
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Label, Static

from nilemetrics.protocol.report import ReportOut
from nilemetrics.tui.history_api import ApiError, parse_time_text
from nilemetrics.tui.ranges import RANGES, RANGES_BY_KEY, Range
from nilemetrics.tui.view_keys import view_bindings

if TYPE_CHECKING:
    from nilemetrics.tui.app import NileMetricsApp


def pct(value: float | None) -> str:
    """A share as ``12.5%`` (``–`` when undefined), as ``nilemetrics report`` prints it."""
    return "–" if value is None else f"{value * 100:.1f}%"


def _table(title: str, *columns: str) -> Table:
    # One space between columns: an error code such as insufficient_funds fits whole
    # beside four figures in half of a 120-column terminal.
    table = Table(title=title, title_justify="left", expand=True, box=None,
                  header_style="bold", pad_edge=False, padding=(0, 0, 0, 1))
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index == 0 else "right",
                         no_wrap=True, overflow="ellipsis", min_width=len(column))
    return table


def report_tables(report: ReportOut) -> dict[str, Table]:
    """The report's sections as Rich tables, by widget id, in reading order."""
    pages = _table("Average time on page", "page type", "visits", "avg time")
    times = report.time_on_page
    for row in times.by_page_type:
        pages.add_row(row.page_type, str(row.visits), f"{row.avg_seconds:.1f}s")
    for title, rows in (("category", times.by_category), ("offer", times.by_offer)):
        for ident in rows:
            pages.add_row(f"{title}:{ident.identifier}", str(ident.visits),
                          f"{ident.avg_seconds:.1f}s")
    funnel = _table("Conversion funnel", "step", "sessions", "drop-off", "conversion")
    for step in report.funnel:
        drop = "" if step.drop_off is None else f"{step.drop_off} ({pct(step.drop_off_rate)})"
        funnel.add_row(step.step, str(step.sessions), drop, pct(step.conversion))
    abandon = _table("Abandonment points (last page of sessions with an unpaid checkout)", "page",
                     "sessions", "share")
    for point in report.abandonment:
        page = point.page_type + (f":{point.page_identifier}" if point.page_identifier else "")
        abandon.add_row(page, str(point.sessions), pct(point.share))
    codes = _table("Payment errors by code", "error code", "errors", "checkouts", "at stake",
                   "recovered")
    for line in report.payment_errors:
        codes.add_row(line.error_code, str(line.errors), str(line.checkouts),
                      line.amount_at_stake, line.amount_recovered)
    retry = report.retries
    retries = _table(
        f"Retries: {retry.succeeded_after_retry} of {retry.failed_checkouts} failed "
        f"checkouts paid later ({pct(retry.succeeded_after_retry_rate)})",
        "failures", "checkouts", "paid after", "share of failed")
    for step_ in retry.by_failures:
        retries.add_row(str(step_.failures), str(step_.checkouts), str(step_.succeeded),
                        pct(step_.share_of_failed_checkouts))
    pay = report.payment_success
    success = _table("Payment success", "measure", "value")
    for label, value in (("checkouts started", str(pay.checkouts)),
                         ("with a payment outcome", str(pay.checkouts_with_outcome)),
                         ("paid", str(pay.paid)),
                         ("success rate (per checkout)", pct(pay.success_rate)),
                         ("payment attempts", str(pay.payment_attempts)),
                         ("success rate (per attempt)", pct(pay.attempt_success_rate))):
        success.add_row(label, value)
    return {"report-pages": pages, "report-funnel": funnel, "report-abandonment": abandon,
            "report-codes": codes, "report-retries": retries, "report-success": success}


class ReportScreen(Screen[None]):
    """The session analytics of the last 1h, 24h, 7d or 30d (keys), from the server."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "app.quit", "Quit"),
        *view_bindings(),
        *(Binding(r.key, f"range({r.key!r})", r.label) for r in RANGES),
        Binding("r", "refresh", "Refresh"),
    ]

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]

    range_key: reactive[str] = reactive("d", init=False)

    def __init__(self) -> None:
        super().__init__()
        self.report: ReportOut | None = None

    @property
    def dashboard(self) -> NileMetricsApp:
        """The app: the API client and the clock."""
        return cast("NileMetricsApp", self.app)

    @property
    def range(self) -> Range:
        """The period shown."""
        return RANGES_BY_KEY[self.range_key]

    def compose(self) -> ComposeResult:
        """A title line and the report's sections."""
        yield Label("", id="report-title", classes="view-title")
        with VerticalScroll(id="report-scroll"), Grid(id="report-grid"):
            for widget_id in ("report-pages", "report-funnel", "report-abandonment",
                              "report-codes", "report-retries", "report-success"):
                yield Static("", id=widget_id, classes="report-section")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        """Keep the report fresh while it is shown."""
        self.set_interval(self.dashboard.config.history_refresh_seconds, self._refresh_while_shown)

    def _refresh_while_shown(self) -> None:
        if self.is_current:
            self._load(self.range)  # quietly: the numbers on screen stay until the answer

    def on_screen_resume(self) -> None:
        """Showing the screen (the first time too) reports the default period up to now
        (the last 24 hours, as `nilemetrics report`)."""
        self.action_refresh()

    def _title(self, status: str) -> None:
        keys = " ".join(f"{r.key} {r.label}" for r in RANGES)
        self.query_one("#report-title", Label).update(
            f"Report · last {self.range.label} · {status} · {keys}")

    def action_range(self, key: str) -> None:
        """Report another period."""
        if key != self.range_key:
            self.range_key = key
            self.action_refresh()

    def action_refresh(self) -> None:
        """Ask the server for the period up to now."""
        self._title("loading…")
        self._load(self.range)

    @work(exclusive=True, group="report")
    async def _load(self, range_: Range) -> None:
        now = self.dashboard.clock.server_now()
        since = now - timedelta(seconds=range_.seconds)
        try:
            report = await self.dashboard.api.report(since, now)
        except ApiError as exc:
            self._title(f"could not load the report: {exc}")
            return
        if range_ is not self.range:
            return
        self.report = report
        for widget_id, table in report_tables(report).items():
            self.query_one(f"#{widget_id}", Static).update(table)
        period = ""
        start, end = parse_time_text(report.since), parse_time_text(report.until)
        if start and end:
            period = f"{start.astimezone():%Y-%m-%d %H:%M} → {end.astimezone():%Y-%m-%d %H:%M}"
        self._title(period or "no period")
