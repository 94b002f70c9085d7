"""A live count, large, with a sparkline of the last minutes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.reactive import reactive
from textual.widgets import Digits, Sparkline

from nilemetrics.tui.messages import PanelChosen

#: What the digits show before the first frame: nothing is known yet (a dash, not 0).
UNKNOWN = "-"


class CountPanel(Vertical):
    """One page type's live sessions: the number, and its history as a sparkline.

    The border's subtitle is the sparkline's time axis (``−10 min … now``).
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "choose", "Sessions", show=False),
    ]

    can_focus = True
    count: reactive[int | None] = reactive(None)

    def __init__(self, title: str, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.border_title = title

    def compose(self) -> ComposeResult:
        """The number (and, in subclasses, more beside it) above the sparkline."""
        with Horizontal(classes="panel-body"):
            yield Digits(UNKNOWN, classes="count")
            yield from self.compose_beside()
        yield Sparkline([], classes="history")

    def compose_beside(self) -> ComposeResult:
        """Widgets shown to the right of the number (none here)."""
        yield from ()

    def watch_count(self, count: int | None) -> None:
        """Show the new number."""
        if self.is_mounted:
            self.query_one(".count", Digits).update(UNKNOWN if count is None else str(count))

    def on_mount(self) -> None:
        """Show the initial number."""
        self.watch_count(self.count)

    def action_choose(self) -> None:
        """Ask for the live sessions behind this panel."""
        if self.id:
            self.post_message(PanelChosen(self.id))

    def on_click(self, _event: events.Click) -> None:
        """A click on the panel does what Enter does."""
        self.action_choose()

    def set_history(self, values: Sequence[float], axis: str) -> None:
        """Replace the sparkline's data (oldest first) and its time-axis label."""
        sparkline = self.query_one(".history", Sparkline)
        data = list(values)
        if len(data) == 1:
            data *= 2  # one value alone would be drawn as a full bar, two as a flat line
        if list(sparkline.data or []) != data:
            sparkline.data = data
        if self.border_subtitle != axis:
            self.border_subtitle = axis
