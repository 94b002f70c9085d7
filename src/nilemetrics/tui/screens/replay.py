"""Replay: the live screen as it was at a past minute, stepped minute by minute."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import ClassVar

from textual import work
from textual.binding import Binding, BindingType
from textual.screen import Screen

from nilemetrics.protocol.history import Step
from nilemetrics.tui.history_api import ApiError
from nilemetrics.tui.messages import Notice
from nilemetrics.tui.model import History, Metrics, errors_in_last_minute, span_text
from nilemetrics.tui.panels import PANELS
from nilemetrics.tui.screens.live import LiveScreen

MINUTE = timedelta(minutes=1)


def floor_minute(at: datetime) -> datetime:
    """The start of ``at``'s minute, in UTC."""
    return at.astimezone(UTC).replace(second=0, microsecond=0)


def replay_marker(at: datetime) -> str:
    """``REPLAY 03:10 · 2026-12-01`` in local time (as every time on screen)."""
    local = at.astimezone()
    return f"REPLAY {local:%H:%M} · {local:%Y-%m-%d}"


class ReplayScreen(LiveScreen, inherit_bindings=False):
    """The live screen as it was when a minute ended, from the server's history.

    The numbers come from ``/history/snapshot`` (sampled at each minute's start: the
    next minute's sample is the end of this one), the table from ``/payment-errors``
    up to the end of the minute, the sparklines from the ten minutes before.
    """

    # Its own list (inherit_bindings=False), so the replay's keys lead the footer.
    BINDINGS: ClassVar[list[BindingType]] = [
        # Priority: the table would take the arrows for its own cursor (and Esc in the
        # filter box still clears it, see action_back).
        Binding("escape", "back", "Back to live", priority=True),
        Binding("left", "step(-1)", "−1 min", priority=True),
        Binding("right", "step(1)", "+1 min", priority=True),
        Binding("1", "back", "Live", show=False),
        *(binding for binding in [*Screen.BINDINGS, *LiveScreen.BINDINGS]
          if not isinstance(binding, Binding) or binding.key not in ("p", "1")),
    ]

    def __init__(self, at: datetime) -> None:
        super().__init__()
        #: The minute shown (its start, UTC).
        self.at = floor_minute(at)
        #: The minute whose data is on screen (``None`` while the first one loads).
        self.loaded_at: datetime | None = None
        self._replay_histories: dict[str, History] = {}

    def on_mount(self) -> None:
        """Mark the screen as a replay and load the minute."""
        self.add_class("-replay")
        self._filter.cursor_blink = False
        self._status.replay = replay_marker(self.at)
        self._status.state = "ended"
        self._update_table_titles()
        self._table.focus()
        self._show_time()
        self._load()

    # ------------------------------------------------------------ loading

    @work(exclusive=True, group="replay")
    async def _load(self) -> None:
        at = self.at
        api = self.dashboard.api
        end = at + MINUTE
        try:
            metrics = await self._numbers_at_end(at)
            rows = await api.payment_errors(until=end)
            history = await api.history(end - timedelta(seconds=self.dashboard.config
                                                         .history_seconds), end, Step.MINUTE)
        except ApiError as exc:
            self.post_message(Notice(f"Could not replay {at.astimezone():%H:%M}: {exc}",
                                     "error", None))
            if self.loaded_at is not None and at == self.at:
                # Stay on the minute whose numbers are on screen, and say that one.
                self.at = self.loaded_at
                self._status.replay = replay_marker(self.at)
                self._show_time()
            return
        if at != self.at:
            return  # the user stepped on meanwhile; that minute's load follows
        span = self.dashboard.config.history_seconds
        self._replay_histories = {panel.id: History(span, MINUTE.total_seconds())
                                  for panel in PANELS}
        for panel in PANELS:
            self._replay_histories[panel.id].preload(
                (point.at, panel.count_pages(point.pages))
                for point in history.points if point.at is not None)
        self._latest_metrics = metrics
        self._latest_rows = rows
        self.loaded_at = at
        self._show_metrics()
        self._show_rows()
        self._payments.errors_last_minute = errors_in_last_minute(rows, end)
        self._payments.alert = (errors_in_last_minute(rows, end)
                                > self.dashboard.config.alert_errors_per_min)
        self._clear_notice()

    async def _numbers_at_end(self, at: datetime) -> Metrics:
        """The live numbers as the minute ended (the next minute's sample), so that they
        agree with the table of the errors up to then; for the minute still running, its
        start's sample."""
        api = self.dashboard.api
        try:
            return await api.snapshot(at + MINUTE)
        except ApiError as exc:
            if exc.status != 404:
                raise
        return await api.snapshot(at)

    # ---------------------------------------------------------- rendering

    def _show_histories(self) -> None:
        now = self.at + MINUTE - timedelta(seconds=1)
        for panel in PANELS:
            history = self._replay_histories.get(panel.id)
            if history is None:
                continue
            values = history.values(now)
            span = len(values) * history.bucket
            axis = span_text(span).replace("now", f"{self.at.astimezone():%H:%M}")
            self._panels[panel.id].set_history(values, axis if values else "")

    def _show_time(self) -> None:
        self._status.clock = f"{self.at.astimezone():%H:%M}"

    def _tick_once(self) -> None:
        """A replay stands still: nothing moves with the clock."""

    # ------------------------------------------------------------- actions

    def action_step(self, minutes: int) -> None:
        """Show the minute before or after (never past the server's now)."""
        latest = floor_minute(self.dashboard.clock.server_now())
        target = min(self.at + minutes * MINUTE, latest)
        if target == self.at:
            self.app.bell()
            return
        self.at = target
        self._status.replay = replay_marker(target)
        self._show_time()
        self._load()

    def action_pause(self) -> None:
        """A replay is still already; p does nothing here."""

    def action_back(self) -> None:
        """Back to the live dashboard (in the filter box: clear the filter, as on Live)."""
        if self._filter.has_focus:
            self._filter.value = ""
            self._filter_bar.remove_class("-visible")
            self._table.focus()
            return
        self.dashboard.leave_replay(self)
