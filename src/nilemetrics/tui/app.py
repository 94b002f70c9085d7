"""The dashboard app: the feed, what it says, global keys; its screens show it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.reactive import var
from textual.screen import Screen

from nilemetrics.protocol import WsEvent
from nilemetrics.protocol.history import Step
from nilemetrics.tui.config import DashboardConfig
from nilemetrics.tui.export import export_rows
from nilemetrics.tui.feed import (
    AuthRefused,
    BadFrame,
    Connected,
    Connecting,
    FeedEvent,
    FeedFactory,
    Frame,
    WebSocketFeed,
)
from nilemetrics.tui.feed_clock import FeedClock
from nilemetrics.tui.history_api import ApiError, HistoryApi
from nilemetrics.tui.messages import (
    ConnectionChanged,
    ErrorsReceived,
    FeedEnded,
    FrameIgnored,
    HeartbeatReceived,
    MetricsReceived,
    Notice,
)
from nilemetrics.tui.model import (
    ErrorRow,
    FrameError,
    History,
    Metrics,
    errors_in_last_minute,
    parse_error_rows,
    parse_time,
)
from nilemetrics.tui.page_sessions import SessionsFetcher, http_fetcher
from nilemetrics.tui.panels import PANELS
from nilemetrics.tui.screens.customer import CustomerScreen
from nilemetrics.tui.screens.help import HelpScreen
from nilemetrics.tui.screens.history import HistoryScreen
from nilemetrics.tui.screens.live import LiveScreen
from nilemetrics.tui.screens.replay import ReplayScreen
from nilemetrics.tui.screens.report import ReportScreen
from nilemetrics.tui.view_keys import VIEW_KEYS

#: The live view's name: the app's first mode, and where it routes the feed.
LIVE = "live"
CUSTOMER = "customer"

#: Least time between two notices about ignored frames (a broken server must not flood).
NOTICE_INTERVAL = 5.0


@dataclass(frozen=True, slots=True)
class View:
    """A screen of the dashboard, switched to by its number key."""

    key: str
    name: str
    label: str
    screen: type[Screen[None]]


#: The dashboard's views, in key order. A new one is its Screen module and a line here.
_SCREENS: dict[str, type[Screen[None]]] = {
    LIVE: LiveScreen, "history": HistoryScreen, CUSTOMER: CustomerScreen, "report": ReportScreen,
}
VIEWS: tuple[View, ...] = tuple(View(key, name, label, _SCREENS[name])
                                for key, name, label in VIEW_KEYS)


class NileMetricsApp(App[None]):
    """`nilemetrics watch`: the seller's live view of the shop.

    The app owns the feed: it parses frames, keeps what every view may need (the
    latest numbers and rows, the sparkline histories, the clocks, the alert) and
    routes the feed's messages to the live screen, which shows them.
    """

    CSS_PATH = Path(__file__).parent / "dashboard.tcss"
    TITLE = "nilemetrics"
    SCREENS: ClassVar[dict[str, Callable[[], Screen[Any]]]] = {
        view.name: view.screen for view in VIEWS
    }
    MODES: ClassVar[dict[str, str | Callable[[], Screen[Any]]]] = {
        view.name: view.name for view in VIEWS
    }
    DEFAULT_MODE: ClassVar[str] = VIEWS[0].name
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        # Ctrl-C quits too, whatever has focus (Textual's default only shows a hint).
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help"),
        Binding("t", "toggle_theme", "Theme", show=False),
        *(Binding(view.key, f"switch_mode({view.name!r})", view.label, show=False)
          for view in VIEWS),
    ]

    #: Whether payment errors per minute are above the threshold (the bell rang).
    alerting: var[bool] = var(False, init=False)
    #: Payment errors in the minute up to the server's now (``None`` before the first check).
    errors_last_minute: var[int | None] = var(None, init=False)

    def __init__(
        self,
        config: DashboardConfig,
        feed_factory: FeedFactory | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        tick_interval: float = 1.0,
        wall_clock: Callable[[], datetime] | None = None,
        sessions_fetcher: SessionsFetcher | None = None,
        api: HistoryApi | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self._feed_factory = feed_factory or (
            lambda: aiter(WebSocketFeed(config.url, config.token))
        )
        self._sessions_fetcher = sessions_fetcher or http_fetcher(config.url, config.token)
        #: The server's history, journey and report endpoints.
        self.api = api or HistoryApi(config.url, config.token)
        #: Whether the sparklines got the server's last minutes (once per run).
        self.histories_preloaded = False
        #: Why they did not (no notice: the dashboard works as before without history).
        self.preload_error: str | None = None
        self._preload_pending = False
        self.tick_interval = tick_interval
        self.clock = FeedClock(monotonic, wall_clock or (lambda: datetime.now(UTC)),
                               config.heartbeat_interval)
        #: The latest numbers received (zeros before the first metrics frame).
        self.metrics = Metrics()
        #: The latest payment-error rows received, newest first.
        self.error_rows: list[ErrorRow] = []
        #: Each panel's number over time, recorded from every frame (before coalescing).
        self.histories: dict[str, History] = {
            panel.id: History(config.history_seconds, config.history_bucket_seconds)
            for panel in PANELS
        }
        self.connection: FeedEvent = Connecting(0)
        self.ignored_frames = 0
        self.bells = 0
        self.notice_log: list[str] = []
        self.exports: list[Path] = []
        self._last_notice_at = float("-inf")
        self._suppressed_notices = 0

    @property
    def sessions_fetcher(self) -> SessionsFetcher:
        """How a page panel's live sessions are fetched from the server."""
        return self._sessions_fetcher

    @property
    def live_screen(self) -> LiveScreen:
        """The live dashboard (it keeps receiving frames while other screens are on top)."""
        return self.get_screen(LIVE, LiveScreen)

    def on_mount(self) -> None:
        """Start the feed worker and the clock that moves the alert window on."""
        self.set_interval(self.tick_interval, self.check_alert)
        self.check_alert()
        self._consume_feed()
        if self.config.notice:
            self.show_notice(self.config.notice, timeout=30)
        if self.config.replay_at is not None:
            self.open_replay(self.config.replay_at)

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
            self.clock.frame(data=True)
            self._receive_frame(event)
        elif isinstance(event, BadFrame):
            self.clock.frame(data=False)
            self.post_message(FrameIgnored(f"malformed frame: {event.reason}"))
        else:
            self.post_message(ConnectionChanged(event))

    def _receive_frame(self, frame: Frame) -> None:
        try:
            if frame.event == WsEvent.METRICS_UPDATE:
                metrics = Metrics.from_data(frame.data)
                self.clock.note_server_time(metrics.last_updated)
                # Recorded here, before coalescing, so no frame is missing from the history.
                at = self.clock.server_now()
                for panel in PANELS:
                    self.histories[panel.id].record(at, panel.count(metrics))
                self.post_message(MetricsReceived(metrics))
            elif frame.event == WsEvent.PAYMENT_ERRORS_UPDATE:
                rows, unusable = parse_error_rows(frame.data)
                self.post_message(ErrorsReceived(rows, unusable))
            elif frame.event == WsEvent.METRICS_HEARTBEAT:
                data = frame.data if isinstance(frame.data, dict) else {}
                self.clock.note_server_time(parse_time(data.get("timestamp")))
                interval = data.get("intervalSeconds")
                if isinstance(interval, int | float) and interval > 0:
                    # The server says how often it beats; staleness follows it.
                    self.clock.heartbeat_interval = float(interval)
                self.post_message(HeartbeatReceived(frame))
            elif frame.event == WsEvent.ERROR:
                data = frame.data if isinstance(frame.data, dict) else {}
                self.post_message(FrameIgnored(f"server said: {data.get('message', frame.data)}"))
            else:
                self.post_message(FrameIgnored(f"unknown frame {frame.event!r}"))
        except FrameError as exc:
            self.post_message(FrameIgnored(str(exc)))

    @work(exclusive=True, group="preload")
    async def _preload_histories(self) -> None:
        """Fill the sparklines with the server's last minutes (they would start empty)."""
        until = self.clock.server_now()
        since = until - timedelta(seconds=self.config.history_seconds)
        try:
            history = await self.api.history(since, until, Step.MINUTE)
        except ApiError as exc:
            # An older server has no history: the sparklines start now, as they did.
            self.preload_error = str(exc)
            return
        self.histories_preloaded = True
        for panel in PANELS:
            self.histories[panel.id].preload(
                (point.at, panel.count_pages(point.pages))
                for point in history.points if point.at is not None)
        self.live_screen.refresh_histories()

    # -------------------------------------------------------------- handlers

    def on_connection_changed(self, message: ConnectionChanged) -> None:
        """Keep the state and pass it on; an auth refusal also gets a notice."""
        event = message.event
        self.connection = event
        self.live_screen.post_message(message)
        if isinstance(event, Connected) and not self.histories_preloaded:
            # Asked once the first numbers give the server's time (its clock may not be ours).
            self._preload_pending = True
        if isinstance(event, AuthRefused):
            self.show_notice(
                f"Not authorised: {event.reason}. Pass --token or set "
                "NILEMETRICS_DASHBOARD_TOKEN (a server on this machine stores its token "
                "in your config directory).",
                severity="error",
                timeout=None,
            )

    def on_feed_ended(self, message: FeedEnded) -> None:
        """Pass it on: the header says the feed ended (unless the token was refused)."""
        self.live_screen.post_message(message)

    def on_metrics_received(self, message: MetricsReceived) -> None:
        """Keep the numbers and pass them on."""
        self.metrics = message.metrics
        self.live_screen.post_message(message)
        self.check_alert()
        if self._preload_pending:
            self._preload_pending = False
            self._preload_histories()

    def on_errors_received(self, message: ErrorsReceived) -> None:
        """Keep the rows for the alert and pass them on."""
        if message.unusable:
            self._notice(f"skipped {message.unusable} unusable payment-error row(s)")
        self.error_rows = message.rows
        self.live_screen.post_message(message)
        self.check_alert()

    def on_heartbeat_received(self, message: HeartbeatReceived) -> None:
        """The server is alive; the alert window moves on, the data is fresh again."""
        self.check_alert()
        self.live_screen.post_message(message)

    def on_frame_ignored(self, message: FrameIgnored) -> None:
        """Count the frame and say so, at most every few seconds."""
        self.ignored_frames += 1
        self._notice(f"Ignored a frame: {message.reason}")

    def _notice(self, text: str) -> None:
        now = self.clock.monotonic()
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
        """Show a notice on the live screen's notice line (a toast would cover the table)."""
        self.notice_log.append(text)
        self.live_screen.post_message(Notice(text, severity, timeout))

    def check_alert(self) -> None:
        """Count the last minute's payment errors; ring once when they rise above the threshold."""
        per_minute = errors_in_last_minute(self.error_rows, self.clock.server_now())
        spiking = per_minute > self.config.alert_errors_per_min
        if spiking and not self.alerting:
            self.bells += 1
            self.bell()
        self.alerting = spiking
        self.errors_last_minute = per_minute

    # --------------------------------------------------------------- views

    def open_replay(self, at: datetime) -> None:
        """Show the live screen as it was at the minute ``at``."""
        if isinstance(self.screen, ReplayScreen):
            self.pop_screen()
        self.push_screen(ReplayScreen(at))

    def leave_replay(self, screen: ReplayScreen) -> None:
        """Close a replay and go back to the live dashboard."""
        if self.screen is screen:
            self.pop_screen()
        if self.current_mode != LIVE:
            self.switch_mode(LIVE)

    def open_customer(self, session_id: str, person: str = "") -> None:
        """Show a session's journey (and the person's sessions) on the Customer screen."""
        self.switch_mode(CUSTOMER)
        self.get_screen(CUSTOMER, CustomerScreen).show_session(session_id, person)

    # --------------------------------------------------------------- actions

    def action_help(self) -> None:
        """Show the keys and what every figure counts."""
        self.push_screen(HelpScreen())

    def action_toggle_theme(self) -> None:
        """Switch between the built-in dark and light themes."""
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    def export_csv(self, rows: list[ErrorRow]) -> None:
        """Write ``rows`` to a CSV file in the export directory and say where."""
        try:
            path, count = export_rows(rows, self.config.export_dir, datetime.now())
        except OSError as exc:
            self.show_notice(f"Could not export: {exc}", severity="error", timeout=10)
            return
        self.exports.append(path)
        self.show_notice(f"CSV export: {count} row(s) written to {path}", timeout=10)


def run_dashboard(
    url: str,
    token: str | None,
    alert_errors_per_min: float = 5.0,
    *,
    notice: str | None = None,
    shop_url: str | None = None,
    replay_at: datetime | None = None,
) -> None:
    """Run the dashboard against the server at ``url`` until the user quits (or a signal)."""
    config = DashboardConfig(
        url=url, token=token, alert_errors_per_min=alert_errors_per_min, notice=notice,
        shop_url=shop_url, replay_at=replay_at,
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
