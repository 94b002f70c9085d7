"""The keys, on `?`."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS: tuple[tuple[str, str], ...] = (
    ("↑ ↓  PgUp PgDn", "move in the payment-error table"),
    ("Enter / click", "details of the selected error"),
    ("/", "filter errors by email, code or message (Esc clears)"),
    ("p", "pause updates / resume with the latest state"),
    ("e", "export the visible error rows to a CSV file"),
    ("t", "switch between the dark and light theme"),
    ("Ctrl+P", "command palette (themes, screenshot, quit)"),
    ("?", "this help"),
    ("q", "quit"),
)


class HelpScreen(ModalScreen[None]):
    """The dashboard's keys; any of Escape, q or ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark,enter", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        """A two-column table of keys."""
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for key, what in KEYS:
            table.add_row(key, what)
        with Vertical(id="help-box") as box:
            box.border_title = "Keys"
            box.border_subtitle = "Esc closes"
            yield Static(table)

    async def action_dismiss(self, result: None = None) -> None:
        """Close the screen."""
        self.dismiss(result)
