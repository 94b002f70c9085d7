"""The dashboard app: live panels, the hour's funnel and figures, the payment-error table."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical
from textual.css.query import NoMatches
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Label

from nilemetrics.protocol import WsEvent
from nilemetrics.tui.config import DashboardConfig
from nilemetrics.tui.export import export_rows
from nilemetrics.tui.feed import (
    AuthRefused,
    BadFrame,
    Connected,
    Connecting,
    Disconnected,
    FeedEvent,
    FeedFactory,
    Frame,
    WebSocketFeed,
)
from nilemetrics.tui.messages import (
    ConnectionChanged,
    ErrorsReceived,
    FeedEnded,
    FrameIgnored,
    HeartbeatReceived,
    MetricsReceived,
    PanelChosen,
)
from nilemetrics.tui.model import (
    ErrorRow,
    FrameError,
    History,
    Metrics,
    age_text,
    errors_in_last_minute,
    parse_error_rows,
    parse_time,
    span_text,
    top_error_codes,
)
from nilemetrics.tui.page_sessions import SessionsFetcher, http_fetcher
from nilemetrics.tui.screens.error_detail import ErrorDetailScreen
from nilemetrics.tui.screens.help import HelpScreen
from nilemetrics.tui.screens.page_sessions import PageSessionsScreen
from nilemetrics.tui.widgets.count_panel import CountPanel
from nilemetrics.tui.widgets.error_table import ErrorTable
from nilemetrics.tui.widgets.funnel import Funnel
from nilemetrics.tui.widgets.list_panel import ListPanel
from nilemetrics.tui.widgets.now_strip import NowStrip
from nilemetrics.tui.widgets.payment_line import PaymentLine
from nilemetrics.tui.widgets.status_bar import StatusBar
from nilemetrics.tui.widgets.top_codes import TopCodes

#: Panel id → how its number is read from a metrics frame. Every live session is
#: on exactly one page, so the panels add up to the live count in the header.
PANELS: dict[str, Callable[[Metrics], int]] = {
    "homepage": lambda m: m.homepage,
    "categories": lambda m: m.category_total,
    "offers": lambda m: m.offer_total,
    "other-pages": lambda m: m.other_total,
    "checkout": lambda m: m.checkout,
    "payment": lambda m: m.payment,
    "error-page": lambda m: m.payment_error,
}

#: Panel id → the page types whose live sessions it counts ("other-pages": whatever
#: the latest numbers put there).
PANEL_PAGES: dict[str, list[str]] = {
    "homepage": ["homepage"],
    "categories": ["category"],
    "offers": ["offer"],
    "checkout": ["checkout"],
    "payment": ["payment"],
    "error-page": ["payment_error"],
}

#: Least time between two notices about ignored frames (a broken server must not flood).
NOTICE_INTERVAL = 5.0


class NileMetricsApp(App[None]):
    """`nilemetrics watch`: the seller's live view of the shop."""

    CSS_PATH = Path(__file__).parent / "dashboard.tcss"
    TITLE = "nilemetrics"
    HORIZONTAL_BREAKPOINTS = [
        (0, "-narrow"),
        (120, "-medium"),
        (150, "-wide"),
    ]
    VERTICAL_BREAKPOINTS = [
        (0, "-short"),
        (40, "-tall"),
    ]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        # Ctrl-C quits too, whatever has focus (Textual's default only shows a hint).
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help"),
        Binding("slash", "filter", "Filter"),
        Binding("p", "pause", "Pause"),
        Binding("s", "sort", "Sort"),
        Binding("S", "reverse_sort", "Reverse"),
        Binding("c", "toggle_codes", "Codes"),
        Binding("e", "export", "Export"),
        Binding("t", "toggle_theme", "Theme", show=False),
    ]

    paused: reactive[bool] = reactive(False, init=False)
    filter_text: reactive[str] = reactive("", init=False)
    alerting: reactive[bool] = reactive(False, init=False)

    def __init__(
        self,
        config: DashboardConfig,
        feed_factory: FeedFactory | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        tick_interval: float = 1.0,
        wall_clock: Callable[[], datetime] | None = None,
        sessions_fetcher: SessionsFetcher | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self._feed_factory = feed_factory or (
            lambda: aiter(WebSocketFeed(config.url, config.token))
        )
        self._monotonic = monotonic
        self._sessions_fetcher = sessions_fetcher or http_fetcher(config.url, config.token)
        self._wall_clock = wall_clock or (lambda: datetime.now(UTC))
        self._tick_interval = tick_interval
        self._heartbeat_interval = config.heartbeat_interval
        self.metrics = Metrics()
        #: Whether a metrics frame came yet (before it, the panels show a dash, not 0).
        self.has_metrics = False
        self.error_rows: list[ErrorRow] = []
        #: What is on screen; frozen while paused.
        self.shown_metrics: Metrics | None = None
        self.shown_rows: list[ErrorRow] = []
        self._rows_known = False
        self.notice_log: list[str] = []
        self._notice_timer: Any = None
        self.histories: dict[str, History] = {
            name: History(config.history_seconds, config.history_bucket_seconds)
            for name in PANELS
        }
        self.connection: FeedEvent = Connecting(0)
        self.ignored_frames = 0
        self.bells = 0
        self.exports: list[Path] = []
        self._server_time: datetime | None = None
        self._server_time_at = 0.0
        self._last_frame_at = monotonic()
        self._data_at: float | None = None  # monotonic time of the last frame received
        self._paused_at: tuple[float | None, datetime] | None = None
        self._retry_at: float | None = None
        self._last_notice_at = float("-inf")
        self._suppressed_notices = 0
        self._dirty_while_paused = False

    # ----------------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        """Header, the page panels, the now / hour lines, notices, the table, the key bar."""
        status = StatusBar(id="status")
        status.address = self.config.address
        yield status
        if self.config.shop_url:
            yield Label(f"Demo shop: {self.config.shop_url} · open it in a browser and shop;"
                        " it shows up here", id="shop")
        with Grid(id="panels"):
            yield CountPanel("Homepage", id="homepage")
            yield ListPanel("Categories", id="categories")
            yield ListPanel("Offers", id="offers")
            yield ListPanel("Other pages", id="other-pages")
            yield CountPanel("Checkout", id="checkout")
            yield CountPanel("Payment", id="payment")
            yield CountPanel("Error page", id="error-page")
        with Vertical(id="figures"):
            yield NowStrip(id="now")
            yield Funnel(id="funnel")
            yield PaymentLine(id="payments")
        yield Label("", id="notice")
        with Horizontal(id="filter-bar"):
            yield Label("Filter:", id="filter-label")
            yield Input(placeholder="email, error code or message · Esc clears", id="filter")
        with Horizontal(id="bottom"):
            yield ErrorTable(id="errors")
            codes = TopCodes(id="top-codes")
            codes.border_title = "Top error codes"
            yield codes
        yield Footer(show_command_palette=False)

    @property
    def _main(self) -> Screen[Any]:
        # The dashboard screen, even while the detail or help screen is on top.
        return self.screen_stack[0] if self.screen_stack else self.screen

    def on_mount(self) -> None:
        """Start the feed worker and the one-second clock (countdown, staleness, sparklines)."""
        self._main.query_one("#filter", Input).cursor_blink = False
        self._update_table_titles()
        self._main.query_one(ErrorTable).focus()  # arrows and Enter work at once
        self.set_interval(self._tick_interval, self._tick)
        self._tick()
        self._consume_feed()
        if self.config.notice:
            self.show_notice(self.config.notice, timeout=30)

    # ------------------------------------------------------------------ feed

    @work(exclusive=True, group="feed")
    async def _consume_feed(self) -> None:
        """Read the feed and post messages; the handlers update the widgets."""
        try:
            async for event in self._feed_factory():
                self._receive(event)
        finally:
            self.post_message(FeedEnded())

    def _receive(self, event: FeedEvent) -> None:
        if isinstance(event, Frame):
            self._last_frame_at = self._data_at = self._monotonic()
            self._receive_frame(event)
        elif isinstance(event, BadFrame):
            self._last_frame_at = self._monotonic()
            self.post_message(FrameIgnored(f"malformed frame: {event.reason}"))
        else:
            self.post_message(ConnectionChanged(event))

    def _receive_frame(self, frame: Frame) -> None:
        try:
            if frame.event == WsEvent.METRICS_UPDATE:
                metrics = Metrics.from_data(frame.data)
                self._note_server_time(metrics.last_updated)
                # Recorded here, before coalescing, so no frame is missing from the history.
                at = self.server_now()
                for name, value in PANELS.items():
                    self.histories[name].record(at, value(metrics))
                self.post_message(MetricsReceived(metrics))
            elif frame.event == WsEvent.PAYMENT_ERRORS_UPDATE:
                rows, unusable = parse_error_rows(frame.data)
                self.post_message(ErrorsReceived(rows, unusable))
            elif frame.event == WsEvent.METRICS_HEARTBEAT:
                data = frame.data if isinstance(frame.data, dict) else {}
                self._note_server_time(parse_time(data.get("timestamp")))
                interval = data.get("intervalSeconds")
                if isinstance(interval, int | float) and interval > 0:
                    # The server says how often it beats; staleness follows it.
                    self._heartbeat_interval = float(interval)
                self.post_message(HeartbeatReceived(frame))
            elif frame.event == WsEvent.ERROR:
                data = frame.data if isinstance(frame.data, dict) else {}
                self.post_message(FrameIgnored(f"server said: {data.get('message', frame.data)}"))
            else:
                self.post_message(FrameIgnored(f"unknown frame {frame.event!r}"))
        except FrameError as exc:
            self.post_message(FrameIgnored(str(exc)))

    def _note_server_time(self, at: datetime | None) -> None:
        if at is not None:
            self._server_time = at
            self._server_time_at = self._monotonic()

    def server_now(self) -> datetime:
        """The server's time now, from its last timestamp plus the time since it came."""
        if self._server_time is None:
            return datetime.now(UTC)
        elapsed = self._monotonic() - self._server_time_at
        return self._server_time + timedelta(seconds=max(elapsed, 0.0))

    # -------------------------------------------------------------- handlers

    def on_connection_changed(self, message: ConnectionChanged) -> None:
        """Show the connection state; an auth refusal also gets a notice."""
        event = message.event
        self.connection = event
        status = self._main.query_one(StatusBar)
        if isinstance(event, Connecting):
            if status.state not in ("reconnecting", "unreachable"):
                status.state = "connecting"
            self._retry_at = None
            status.retry_in = None
        elif isinstance(event, Connected):
            self._retry_at = None
            status.retry_in = None
            status.state = "connected"
        elif isinstance(event, Disconnected):
            self._retry_at = self._monotonic() + event.retry_in
            status.retry_in = max(round(event.retry_in), 1)
            status.state = "unreachable" if event.unreachable else "reconnecting"
            status.tooltip = event.reason
        elif isinstance(event, AuthRefused):
            self._retry_at = None
            status.retry_in = None
            status.state = "refused"
            self.show_notice(
                f"Not authorised: {event.reason}. Pass --token or set "
                "NILEMETRICS_DASHBOARD_TOKEN (a server on this machine stores its token "
                "in your config directory).",
                severity="error",
                timeout=None,
            )

    def on_feed_ended(self, _message: FeedEnded) -> None:
        """A feed that ends without an auth refusal (a recording) says so."""
        status = self._main.query_one(StatusBar)
        if status.state != "refused":
            status.state = "ended"
            status.retry_in = None

    def on_metrics_received(self, message: MetricsReceived) -> None:
        """Keep the numbers; show them unless paused."""
        self.metrics = message.metrics
        self.has_metrics = True
        if self.paused:
            self._dirty_while_paused = True
        else:
            self._show_metrics()
        self._check_alert()

    def on_errors_received(self, message: ErrorsReceived) -> None:
        """Keep the rows; show them unless paused."""
        if message.unusable:
            self._notice(f"skipped {message.unusable} unusable payment-error row(s)")
        self.error_rows = message.rows
        if self.paused:
            self._dirty_while_paused = True
        else:
            self._show_rows()
        self._check_alert()

    def on_heartbeat_received(self, _message: HeartbeatReceived) -> None:
        """The server is alive; the alert window moves on, the data is fresh again."""
        self._check_alert()
        self._show_time()

    def on_frame_ignored(self, message: FrameIgnored) -> None:
        """Count the frame and say so, at most every few seconds."""
        self.ignored_frames += 1
        self._notice(f"Ignored a frame: {message.reason}")

    def _notice(self, text: str) -> None:
        now = self._monotonic()
        if now - self._last_notice_at < NOTICE_INTERVAL:
            self._suppressed_notices += 1
            return
        if self._suppressed_notices:
            text += f" (and {self._suppressed_notices} more since)"
            self._suppressed_notices = 0
        self._last_notice_at = now
        self.show_notice(text, severity="warning", timeout=6)

    def show_notice(
        self, text: str, *, severity: str = "information", timeout: float | None = 10
    ) -> None:
        """Show a notice on its own line above the table (a toast would cover the table)."""
        self.notice_log.append(text)
        label = self._main.query_one("#notice", Label)
        label.update(text)
        for name in ("information", "warning", "error"):
            label.set_class(name == severity, f"-{name}")
        label.add_class("-visible")
        if self._notice_timer is not None:
            self._notice_timer.stop()
            self._notice_timer = None
        if timeout is not None:
            self._notice_timer = self.set_timer(timeout, self._clear_notice)

    def _clear_notice(self) -> None:
        self._notice_timer = None
        try:
            self._main.query_one("#notice", Label).remove_class("-visible")
        except NoMatches:
            pass  # shutting down

    # ------------------------------------------------------------- rendering

    def _show_metrics(self) -> None:
        if not self.has_metrics:
            return
        m = self.shown_metrics = self.metrics
        for name, value in PANELS.items():
            self._main.query_one(f"#{name}", CountPanel).count = value(m)
        self._main.query_one("#categories", ListPanel).set_items(m.categories)
        self._main.query_one("#offers", ListPanel).set_items(m.offers)
        self._main.query_one("#other-pages", ListPanel).set_items(m.other_pages)
        self._main.query_one(NowStrip).metrics = m
        self._main.query_one(Funnel).metrics = m
        self._main.query_one(PaymentLine).metrics = m
        self._main.query_one(StatusBar).live_sessions = m.live_sessions
        self._main.query_one(StatusBar).alerts = m.alerts
        self._show_time()
        self._update_table_titles()
        self._show_histories()

    def _show_histories(self) -> None:
        now = self.server_now()
        for name in PANELS:
            panel = self._main.query_one(f"#{name}", CountPanel)
            values = self.histories[name].values(now)
            span = len(values) * self.histories[name].bucket
            panel.set_history(values, span_text(span) if values else "")

    def visible_rows(self) -> list[ErrorRow]:
        """The error rows on screen that the filter lets through, newest first."""
        needle = self.filter_text.strip()
        return [row for row in self.shown_rows if row.matches(needle)]

    def _show_rows(self) -> None:
        self.shown_rows = self.error_rows
        self._rows_known = True
        self._render_rows()

    def _render_rows(self) -> None:
        self._main.query_one(ErrorTable).show_rows(self.visible_rows())
        self._main.query_one(TopCodes).codes = tuple(top_error_codes(self.shown_rows))
        self._update_table_titles()

    def _update_table_titles(self) -> None:
        table = self._main.query_one(ErrorTable)
        shown, received = len(table.rows_shown), len(self.shown_rows)
        in_hour = self.shown_metrics.payment_errors_last_hour if self.shown_metrics else 0
        if not self._rows_known:
            count = "—"
        elif in_hour > received:
            # The server sends at most 50 rows; the hour's count says how many there were.
            count = f"latest {received} of {in_hour}"
        else:
            count = str(received)
        table.border_title = f"Payment errors, last hour: {count} · {table.sort_text}"
        needle = self.filter_text.strip()
        table.filter_note = f"filter “{needle}”: {shown} of {received}" if needle else ""
        codes = self._main.query_one(TopCodes)
        codes.border_subtitle = f"of the {received} rows" if received else ""

    def _check_alert(self) -> None:
        per_minute = errors_in_last_minute(self.error_rows, self.server_now())
        spiking = per_minute > self.config.alert_errors_per_min
        if spiking and not self.alerting:
            self.bells += 1
            self.bell()
        self.alerting = spiking
        if not self.paused:
            self._main.query_one(PaymentLine).errors_last_minute = per_minute

    def watch_alerting(self, alerting: bool) -> None:
        """Turn the payment figures red during a spike (kept as they were while paused)."""
        if not self.paused:
            self._main.query_one(PaymentLine).alert = alerting

    def _show_time(self) -> None:
        """The header's clock and the age of the data on screen."""
        status = self._main.query_one(StatusBar)
        status.clock = self._wall_clock().astimezone().strftime("%H:%M:%S")
        # While paused it is the age of what was frozen.
        data_at = self._paused_at[0] if self._paused_at is not None else self._data_at
        now = self._monotonic()
        status.data_age = "" if data_at is None else age_text(max(now - data_at, 0.0))

    def _tick(self) -> None:
        try:
            self._tick_once()
        except NoMatches:
            pass  # the app is shutting down: its widgets are gone

    def _tick_once(self) -> None:
        now = self._monotonic()
        status = self._main.query_one(StatusBar)
        if self._retry_at is not None:
            status.retry_in = max(int(self._retry_at - now + 0.999), 0)
        status.stale = now - self._last_frame_at > 2 * self._heartbeat_interval
        self._show_time()
        if not self.paused:
            self._show_histories()
        self._check_alert()

    # --------------------------------------------------------------- actions

    def action_help(self) -> None:
        """Show the keys and what every figure counts."""
        self.push_screen(HelpScreen())

    def action_sort(self) -> None:
        """Sort the error table by the next column."""
        self._main.query_one(ErrorTable).cycle_sort()
        self._update_table_titles()

    def action_reverse_sort(self) -> None:
        """Reverse the error table's order."""
        table = self._main.query_one(ErrorTable)
        table.sort_descending = not table.sort_descending
        self._update_table_titles()

    def action_toggle_codes(self) -> None:
        """Show or hide the top error codes (shown by default from 120 columns)."""
        self.screen.toggle_class("-codes-toggled")

    def action_filter(self) -> None:
        """Show the filter bar and type into it."""
        self._main.query_one("#filter-bar").add_class("-visible")
        self._main.query_one("#filter", Input).focus()

    def action_pause(self) -> None:
        """Freeze the panels and the table, or resume with the latest state."""
        self.paused = not self.paused

    def watch_paused(self, paused: bool) -> None:
        """Show the pause, and on resume catch up with what came meanwhile."""
        self._main.query_one(StatusBar).paused = paused
        self._main.set_class(paused, "-paused")
        self._paused_at = (self._data_at, self.server_now()) if paused else None
        if not paused:
            if self._dirty_while_paused:
                self._dirty_while_paused = False
                self._show_metrics()
                self._show_rows()
            self._show_histories()
            self._check_alert()
            self._main.query_one(PaymentLine).alert = self.alerting

    def action_export(self) -> None:
        """Write the rows the table shows to a CSV file and say where."""
        rows = self._main.query_one(ErrorTable).rows_shown
        try:
            path, count = export_rows(rows, self.config.export_dir, datetime.now())
        except OSError as exc:
            self.show_notice(f"Could not export: {exc}", severity="error", timeout=10)
            return
        self.exports.append(path)
        self.show_notice(f"CSV export: {count} row(s) written to {path}", timeout=10)

    def action_toggle_theme(self) -> None:
        """Switch between the built-in dark and light themes."""
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, _event: Input.Submitted) -> None:
        if not self.filter_text.strip():
            self._main.query_one("#filter-bar").remove_class("-visible")
        self._main.query_one(ErrorTable).focus()

    def watch_filter_text(self, _text: str) -> None:
        """Re-filter the rows on screen (while paused too, without taking in new rows)."""
        self._render_rows()

    def on_key(self, event: events.Key) -> None:
        """Escape in the filter clears it and hides the bar."""
        filter_input = self._main.query_one("#filter", Input)
        if event.key == "escape" and filter_input.has_focus:
            event.stop()
            filter_input.value = ""
            self._main.query_one("#filter-bar").remove_class("-visible")
            self._main.query_one(ErrorTable).focus()

    def on_panel_chosen(self, message: PanelChosen) -> None:
        """List the live sessions behind a page panel."""
        panel = self._main.query_one(f"#{message.panel_id}", CountPanel)
        if message.panel_id == "other-pages":
            shown = self.shown_metrics
            pages = list(shown.other_pages) if shown else []
        else:
            pages = PANEL_PAGES.get(message.panel_id, [])
        self.push_screen(PageSessionsScreen(str(panel.border_title), pages,
                                            self._sessions_fetcher))

    @on(DataTable.RowSelected, "#errors")
    def _row_selected(self, _event: DataTable.RowSelected) -> None:
        row = self._main.query_one(ErrorTable).selected_row
        if row is not None:
            self.push_screen(ErrorDetailScreen(row))


def run_dashboard(
    url: str,
    token: str | None,
    alert_errors_per_min: float = 5.0,
    *,
    notice: str | None = None,
    shop_url: str | None = None,
) -> None:
    """Run the dashboard against the server at ``url`` until the user quits (or a signal)."""
    config = DashboardConfig(
        url=url, token=token, alert_errors_per_min=alert_errors_per_min, notice=notice,
        shop_url=shop_url,
    )
    app = NileMetricsApp(config)
    with exit_on_signals(app):
        app.run()


#: Signals that end the dashboard like `q`: a `kill`, a closed terminal or SSH session.
EXIT_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def exit_on_signals(app: App[Any]) -> Iterator[None]:
    """While the block runs, SIGTERM and SIGHUP quit ``app`` the way `q` does.

    Their default action kills the process on the spot, leaving the terminal in
    the alternate screen and raw mode. The previous handlers come back afterwards.
    """

    def quit_app(signum: int, _frame: object) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # the app is not running (yet, or any more)
            raise KeyboardInterrupt from None
        # A signal handler may interrupt the loop anywhere: hand over through the
        # loop's thread-safe queue rather than touching the app from here.
        loop.call_soon_threadsafe(app.exit)

    previous = {sig: signal.signal(sig, quit_app) for sig in EXIT_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
