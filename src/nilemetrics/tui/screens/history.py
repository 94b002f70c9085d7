"""History: live sessions, page visits, payment errors and successes over 1h, 24h, 7d, 30d."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, cast

from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Label
from textual_plotext import PlotextPlot
from textual_plotext.plot import Plot

from nilemetrics.protocol.history import HistoryOut, HistoryPoint
from nilemetrics.tui.history_api import ApiError
from nilemetrics.tui.ranges import RANGES, RANGES_BY_KEY, Range
from nilemetrics.tui.view_keys import view_bindings

if TYPE_CHECKING:
    from nilemetrics.tui.app import NileMetricsApp

#: The charts: widget id, title, how a point gives the charted value.
CHARTS: tuple[tuple[str, str, str], ...] = (
    ("chart-live", "Live sessions", "live_sessions"),
    ("chart-visits", "Page visits", "page_visits"),
    ("chart-errors", "Payment errors", "payment_errors"),
    ("chart-paid", "Payment successes", "payment_successes"),
)

#: Labels on a chart's time axis (at most).
TICKS = 5


def point_text(point: HistoryPoint, range_: Range) -> str:
    """What the cursor line says about one bucket."""
    at = point.at.astimezone() if point.at else None
    when = f"{at:%Y-%m-%d %H:%M}" if at else "?"
    codes = sorted(point.payment_errors_by_code.items(), key=lambda kv: (-kv[1], kv[0]))
    code_text = f" ({', '.join(f'{c} {n}' for c, n in codes[:3])})" if codes else ""
    pages = sorted(point.pages.items(), key=lambda kv: (-kv[1], kv[0]))
    on_pages = f" ({', '.join(f'{p} {n}' for p, n in pages[:3] if n)})" if pages else ""
    return (f"{when} ({range_.step.value}) · live {point.live_sessions}{on_pages} · "
            f"page visits {point.page_visits} · sessions started {point.sessions_started} · "
            f"checkouts {point.checkouts_started} · payment errors {point.payment_errors}"
            f"{code_text} · paid {point.payment_successes} ({point.amount_paid:.2f}) · "
            f"failed {point.amount_failed:.2f}")


def _tick_label(point: HistoryPoint, fmt: str) -> str:
    return point.at.astimezone().strftime(fmt) if point.at else ""


class HistoryScreen(Screen[None]):
    """Four charts of the server's history; a cursor reads a bucket, Enter replays it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "app.quit", "Quit"),
        *view_bindings(),
        *(Binding(r.key, f"range({r.key!r})", r.label) for r in RANGES),
        Binding("left", "move(-1)", "◀", show=False),
        Binding("right", "move(1)", "▶", show=False),
        Binding("shift+left", "move(-10)", "◀◀", show=False),
        Binding("shift+right", "move(10)", "▶▶", show=False),
        Binding("home", "move(-100000)", "First", show=False),
        Binding("end", "move(100000)", "Last", show=False),
        Binding("enter", "replay", "Replay"),
        Binding("r", "refresh", "Refresh"),
    ]

    range_key: reactive[str] = reactive("h", init=False)
    cursor: reactive[int] = reactive(0, init=False)

    def __init__(self) -> None:
        super().__init__()
        #: The history on screen (``None`` until the first answer).
        self.history: HistoryOut | None = None

    @property
    def dashboard(self) -> NileMetricsApp:
        """The app: the API client and the clock."""
        return cast("NileMetricsApp", self.app)

    @property
    def range(self) -> Range:
        """The period shown."""
        return RANGES_BY_KEY[self.range_key]

    def compose(self) -> ComposeResult:
        """A title line, the four charts, the cursor line, the key bar."""
        yield Label("", id="history-title", classes="view-title")
        with Grid(id="charts"):
            for chart_id, title, _field in CHARTS:
                plot = PlotextPlot(id=chart_id, classes="chart")
                plot.border_title = title
                yield plot
        yield Label("loading…", id="cursor-line")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        """Say what is shown (the history loads when the screen shows), and keep it fresh."""
        self._show_title()
        self.set_interval(self.dashboard.config.history_refresh_seconds, self._refresh_while_shown)

    def _refresh_while_shown(self) -> None:
        """While on screen, the period moves on with the clock."""
        if self.is_current:
            self.action_refresh()

    def on_screen_resume(self) -> None:
        """Showing the screen (the first time too) loads the period up to now."""
        self.action_refresh()

    def _show_title(self) -> None:
        self.query_one("#history-title", Label).update(
            f"History · last {self.range.label} in {self.range.step.value} buckets · "
            f"←/→ cursor · Enter replays · server {self.dashboard.config.address}")

    # ------------------------------------------------------------- loading

    def action_refresh(self) -> None:
        """Ask the server for the period up to now."""
        self._load(self.range)

    @work(exclusive=True, group="history")
    async def _load(self, range_: Range) -> None:
        since, until = range_.window(self.dashboard.clock.server_now())
        try:
            history = await self.dashboard.api.history(since, until, range_.step)
        except ApiError as exc:
            self.query_one("#cursor-line", Label).update(f"could not load the history: {exc}")
            return
        if range_ is not self.range:
            return
        self.cursor = self._cursor_for(history)
        self.history = history
        self._draw()

    def _cursor_for(self, history: HistoryOut) -> int:
        """Where the cursor goes in a new answer: on the same bucket as before (the newest
        if it was on the newest, or is gone), else the newest."""
        last = max(len(history.points) - 1, 0)
        old = self.history
        if old is None or old.step != history.step or not old.points:
            return last
        if self.cursor >= len(old.points) - 1:
            return last
        at = old.points[self.cursor].at
        for index, point in enumerate(history.points):
            if point.at == at:
                return index
        return last

    # ------------------------------------------------------------- drawing

    def on_resize(self, _event: events.Resize) -> None:
        """The ticks fit the charts' size: draw again (after the new layout)."""
        self.call_after_refresh(self._draw)

    def _draw(self) -> None:
        history = self.history
        if history is None:
            return
        points = history.points
        fmt = self.range.tick_format
        xs = [float(i) for i in range(len(points))]
        for chart_id, title, field in CHARTS:
            plot = self.query_one(f"#{chart_id}", PlotextPlot)
            # Labels well apart: Plotext places colliding labels in an order that varies
            # from run to run (it dedupes through a set).
            width = len(_tick_label(points[0], fmt)) + 8 if points else 1
            count = max(2, min(TICKS, plot.size.width // width)) if plot.size.width else TICKS
            ticks = xs[:: max(len(xs) // count, 1)] if xs else []
            labels = [_tick_label(points[int(i)], fmt) for i in ticks]
            # A fresh figure each time: clear_figure() leaves some layout state behind (the
            # tick labels of a range came out a column apart after another range).
            plot._plot = Plot()
            plt = plot.plt
            ys = [getattr(point, field) for point in points]
            if xs:
                plt.plot(xs, ys, marker="braille")
                plt.xticks(ticks, labels)
                plt.vline(self.cursor, "red")
                top = max(max(ys), 1)
                plt.ylim(0, top)
                # Counts: whole numbers on the axis, not 6.2 sessions, as many as have a
                # row apart (Plotext drops colliding ones in an order that varies by run).
                rows = max(plot.size.height - 3, 2)
                parts = max(1, min(4, rows // 3))
                plt.yticks(sorted({round(top * i / parts) for i in range(parts + 1)}))
                plt.xlim(0, max(len(xs) - 1, 1))
            value = ys[self.cursor] if ys else 0
            plot.border_title = f"{title}: {value}"
            plot.refresh()
        line = self.query_one("#cursor-line", Label)
        if points:
            line.update(point_text(points[self.cursor], self.range))
        else:
            line.update("no history in this period")

    # ------------------------------------------------------------- actions

    def action_range(self, key: str) -> None:
        """Show another period."""
        if key != self.range_key:
            self.range_key = key
            self.history = None
            self._show_title()
            self.query_one("#cursor-line", Label).update("loading…")
            self.action_refresh()

    def action_move(self, delta: int) -> None:
        """Move the cursor by ``delta`` buckets."""
        if self.history is None or not self.history.points:
            return
        self.cursor = max(0, min(self.cursor + delta, len(self.history.points) - 1))

    def watch_cursor(self, _cursor: int) -> None:
        """Redraw with the cursor line where it is now."""
        self._draw()

    def cursor_time(self) -> datetime | None:
        """The start of the bucket under the cursor."""
        if self.history is None or not self.history.points:
            return None
        return self.history.points[self.cursor].at

    def action_replay(self) -> None:
        """Open the live screen as it was at the cursor's minute (a bucket's first)."""
        at = self.cursor_time()
        if at is not None:
            self.dashboard.open_replay(at)
