"""The live dashboard: page panels, the now / hour lines, notices, the payment-error table."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical
from textual.css.query import NoMatches
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Label

from nilemetrics.tui.feed import AuthRefused, Connected, Connecting, Disconnected
from nilemetrics.tui.messages import (
    ConnectionChanged,
    ErrorsReceived,
    FeedEnded,
    HeartbeatReceived,
    MetricsReceived,
    Notice,
    PanelChosen,
)
from nilemetrics.tui.model import ErrorRow, Metrics, age_text, span_text, top_error_codes
from nilemetrics.tui.panels import PANELS, PANELS_BY_ID, PanelSpec
from nilemetrics.tui.screens.error_detail import ErrorDetailScreen
from nilemetrics.tui.screens.page_sessions import PageSessionsScreen
from nilemetrics.tui.view_keys import view_bindings
from nilemetrics.tui.widgets.count_panel import CountPanel
from nilemetrics.tui.widgets.custom_events import CustomEvents
from nilemetrics.tui.widgets.error_table import ErrorTable
from nilemetrics.tui.widgets.funnel import Funnel
from nilemetrics.tui.widgets.list_panel import ListPanel
from nilemetrics.tui.widgets.now_strip import NowStrip
from nilemetrics.tui.widgets.payment_line import PaymentLine
from nilemetrics.tui.widgets.status_bar import StatusBar
from nilemetrics.tui.widgets.top_codes import TopCodes

if TYPE_CHECKING:
    from textual.timer import Timer

    from nilemetrics.tui.app import NileMetricsApp


class LiveScreen(Screen[None]):
    """What the shop looks like now; the app routes the feed's messages here."""

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
        # The footer lists a screen's keys before the app's: the app's quit and help
        # are repeated here so that they lead it.
        Binding("q", "app.quit", "Quit"),
        Binding("question_mark", "app.help", "Help"),
        *view_bindings(),
        Binding("slash", "filter", "Filter"),
        Binding("p", "pause", "Pause"),
        Binding("s", "sort", "Sort"),
        Binding("S", "reverse_sort", "Reverse"),
        Binding("c", "toggle_codes", "Codes"),
        Binding("e", "export", "Export"),
        Binding("j", "journey", "Journey"),
    ]

    paused: reactive[bool] = reactive(False, init=False)
    filter_text: reactive[str] = reactive("", init=False)

    _status: StatusBar
    _panels: dict[str, CountPanel]
    _now: NowStrip
    _funnel: Funnel
    _payments: PaymentLine
    _notice: Label
    _filter_bar: Horizontal
    _filter: Input
    _table: ErrorTable
    _codes: TopCodes
    _custom: CustomEvents

    def __init__(self) -> None:
        super().__init__()
        #: The latest numbers and rows received; ``None`` before the first metrics frame.
        self._latest_metrics: Metrics | None = None
        self._latest_rows: list[ErrorRow] = []
        #: What is on screen; frozen while paused.
        self.shown_metrics: Metrics | None = None
        self.shown_rows: list[ErrorRow] = []
        self._rows_known = False
        self._dirty_while_paused = False
        self._paused_data_at: float | None = None
        self._retry_at: float | None = None
        self._notice_timer: Timer | None = None

    @property
    def dashboard(self) -> NileMetricsApp:
        """The app: its settings, clocks, sparkline histories and alert state."""
        return cast("NileMetricsApp", self.app)

    # ----------------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        """Header, the page panels, the now / hour lines, notices, the table, the key bar."""
        config = self.dashboard.config
        self._status = StatusBar(id="status")
        self._status.address = config.address
        yield self._status
        if config.shop_url:
            yield Label(f"Demo shop: {config.shop_url} · open it in a browser and shop;"
                        " it shows up here", id="shop")
        self._panels = {panel.id: _panel_widget(panel) for panel in PANELS}
        with Grid(id="panels"):
            yield from self._panels.values()
        with Vertical(id="figures"):
            self._now = NowStrip(id="now")
            self._funnel = Funnel(id="funnel")
            self._payments = PaymentLine(id="payments")
            yield from (self._now, self._funnel, self._payments)
        self._notice = Label("", id="notice")
        yield self._notice
        self._filter_bar = Horizontal(id="filter-bar")
        with self._filter_bar:
            yield Label("Filter:", id="filter-label")
            self._filter = Input(placeholder="email, error code or message · Esc clears",
                                 id="filter")
            yield self._filter
        with Horizontal(id="bottom"):
            self._table = ErrorTable(id="errors")
            self._codes = TopCodes(id="top-codes")
            self._codes.border_title = "Top error codes"
            self._custom = CustomEvents(id="custom-events")
            self._custom.border_title = "Events, last 5 min"
            yield self._table
            with Vertical(id="side"):
                yield from (self._codes, self._custom)
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        """Start the one-second clock (countdown, staleness, sparklines) and follow the alert."""
        self._filter.cursor_blink = False
        self._update_table_titles()
        self._table.focus()  # arrows and Enter work at once
        self.set_interval(self.dashboard.tick_interval, self._tick)
        self._tick()
        self.watch(self.dashboard, "errors_last_minute", self._errors_last_minute_changed)
        self.watch(self.dashboard, "alerting", self._alerting_changed)

    # --------------------------------------------------------------- the feed

    def on_connection_changed(self, message: ConnectionChanged) -> None:
        """Show the connection state and the reconnect countdown."""
        event = message.event
        status = self._status
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
            self._retry_at = self.dashboard.clock.monotonic() + event.retry_in
            status.retry_in = max(round(event.retry_in), 1)
            status.state = "unreachable" if event.unreachable else "reconnecting"
            status.tooltip = event.reason
        elif isinstance(event, AuthRefused):
            self._retry_at = None
            status.retry_in = None
            status.state = "refused"

    def on_feed_ended(self, _message: FeedEnded) -> None:
        """A feed that ends without an auth refusal (a recording) says so."""
        if self._status.state != "refused":
            self._status.state = "ended"
            self._status.retry_in = None

    def on_metrics_received(self, message: MetricsReceived) -> None:
        """Keep the numbers; show them unless paused."""
        self._latest_metrics = message.metrics
        if self.paused:
            self._dirty_while_paused = True
        else:
            self._show_metrics()

    def on_errors_received(self, message: ErrorsReceived) -> None:
        """Keep the rows; show them unless paused."""
        self._latest_rows = message.rows
        if self.paused:
            self._dirty_while_paused = True
        else:
            self._show_rows()

    def on_heartbeat_received(self, _message: HeartbeatReceived) -> None:
        """The server is alive: the data is fresh again."""
        self._show_time()

    def on_notice(self, message: Notice) -> None:
        """Show a notice on its own line above the table."""
        label = self._notice
        label.update(message.text)
        for name in ("information", "warning", "error"):
            label.set_class(name == message.severity, f"-{name}")
        label.add_class("-visible")
        if self._notice_timer is not None:
            self._notice_timer.stop()
            self._notice_timer = None
        if message.timeout is not None:
            self._notice_timer = self.set_timer(message.timeout, self._clear_notice)

    def _clear_notice(self) -> None:
        self._notice_timer = None
        self._notice.remove_class("-visible")

    # ------------------------------------------------------------- rendering

    def _show_metrics(self) -> None:
        if self._latest_metrics is None:
            return
        m = self.shown_metrics = self._latest_metrics
        for panel in PANELS:
            widget = self._panels[panel.id]
            widget.count = panel.count(m)
            if panel.items is not None and isinstance(widget, ListPanel):
                widget.set_items(panel.items(m))
        self._now.metrics = m
        self._funnel.metrics = m
        self._payments.metrics = m
        self._custom.set_counts(m.custom_events)
        self._status.live_sessions = m.live_sessions
        self._status.alerts = m.alerts
        self._show_time()
        self._update_table_titles()
        self._show_histories()

    def refresh_histories(self) -> None:
        """The sparkline histories changed (preloaded): show them unless paused."""
        if not self.paused:
            self._show_histories()

    def _show_histories(self) -> None:
        histories = self.dashboard.histories
        now = self.dashboard.clock.server_now()
        for panel in PANELS:
            history = histories[panel.id]
            values = history.values(now)
            span = len(values) * history.bucket
            self._panels[panel.id].set_history(values, span_text(span) if values else "")

    def visible_rows(self) -> list[ErrorRow]:
        """The error rows on screen that the filter lets through, newest first."""
        needle = self.filter_text.strip()
        return [row for row in self.shown_rows if row.matches(needle)]

    def _show_rows(self) -> None:
        self.shown_rows = self._latest_rows
        self._rows_known = True
        self._render_rows()

    def _render_rows(self) -> None:
        self._table.show_rows(self.visible_rows())
        self._codes.codes = tuple(top_error_codes(self.shown_rows))
        self._update_table_titles()

    def _update_table_titles(self) -> None:
        table = self._table
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
        self._codes.border_subtitle = f"of the {received} rows" if received else ""

    def _errors_last_minute_changed(self, count: int | None) -> None:
        if not self.paused:
            self._payments.errors_last_minute = count

    def _alerting_changed(self, alerting: bool) -> None:
        """Turn the payment figures red during a spike (kept as they were while paused)."""
        if not self.paused:
            self._payments.alert = alerting

    def _show_time(self) -> None:
        """The header's clock and the age of the data on screen."""
        clock = self.dashboard.clock
        self._status.clock = clock.wall_clock().astimezone().strftime("%H:%M:%S")
        # While paused it is the age of what was frozen.
        age = clock.age(self._paused_data_at if self.paused else clock.data_at)
        self._status.data_age = "" if age is None else age_text(age)

    def _tick(self) -> None:
        try:
            self._tick_once()
        except NoMatches:
            pass  # the app is shutting down: its widgets are gone

    def _tick_once(self) -> None:
        clock = self.dashboard.clock
        if self._retry_at is not None:
            self._status.retry_in = max(int(self._retry_at - clock.monotonic() + 0.999), 0)
        self._status.stale = clock.stale()
        self._show_time()
        if not self.paused:
            self._show_histories()

    # --------------------------------------------------------------- actions

    def action_sort(self) -> None:
        """Sort the error table by the next column."""
        self._table.cycle_sort()
        self._update_table_titles()

    def action_reverse_sort(self) -> None:
        """Reverse the error table's order."""
        self._table.sort_descending = not self._table.sort_descending
        self._update_table_titles()

    def action_toggle_codes(self) -> None:
        """Show or hide the top error codes (shown by default from 120 columns)."""
        self.toggle_class("-codes-toggled")

    def action_filter(self) -> None:
        """Show the filter bar and type into it."""
        self._filter_bar.add_class("-visible")
        self._filter.focus()

    def action_pause(self) -> None:
        """Freeze the panels and the table, or resume with the latest state."""
        self.paused = not self.paused

    def watch_paused(self, paused: bool) -> None:
        """Show the pause, and on resume catch up with what came meanwhile."""
        self._status.paused = paused
        self.set_class(paused, "-paused")
        self._paused_data_at = self.dashboard.clock.data_at if paused else None
        if not paused:
            if self._dirty_while_paused:
                self._dirty_while_paused = False
                self._show_metrics()
                self._show_rows()
            self._show_histories()
            self.dashboard.check_alert()
            self._payments.errors_last_minute = self.dashboard.errors_last_minute
            self._payments.alert = self.dashboard.alerting

    def action_journey(self) -> None:
        """The selected error's customer: their journey on the Customer screen."""
        row = self._table.selected_row
        session_id = row.raw.get("session_id") if row is not None else None
        if not isinstance(session_id, str) or not session_id:
            self.app.bell()
            return
        self.dashboard.open_customer(session_id, row.email or row.phone if row else "")

    def action_export(self) -> None:
        """Write the rows the table shows to a CSV file."""
        self.dashboard.export_csv(self._table.rows_shown)

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, _event: Input.Submitted) -> None:
        if not self.filter_text.strip():
            self._filter_bar.remove_class("-visible")
        self._table.focus()

    def watch_filter_text(self, _text: str) -> None:
        """Re-filter the rows on screen (while paused too, without taking in new rows)."""
        self._render_rows()

    def on_key(self, event: events.Key) -> None:
        """Escape in the filter clears it and hides the bar."""
        if event.key == "escape" and self._filter.has_focus:
            event.stop()
            self._filter.value = ""
            self._filter_bar.remove_class("-visible")
            self._table.focus()

    def on_panel_chosen(self, message: PanelChosen) -> None:
        """List the live sessions behind a page panel."""
        panel = PANELS_BY_ID.get(message.panel_id)
        if panel is None:
            return
        self.app.push_screen(PageSessionsScreen(
            panel.title, panel.page_types(self.shown_metrics), self.dashboard.sessions_fetcher))

    @on(DataTable.RowSelected, "#errors")
    def _row_selected(self, _event: DataTable.RowSelected) -> None:
        row = self._table.selected_row
        if row is not None:
            self.app.push_screen(ErrorDetailScreen(row))


def _panel_widget(panel: PanelSpec) -> CountPanel:
    """A list panel when the panel lists identifiers, else a plain count."""
    kind = ListPanel if panel.items is not None else CountPanel
    return kind(panel.title, id=panel.id, classes="-prominent" if panel.prominent else None)
