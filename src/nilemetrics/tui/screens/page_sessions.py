"""The live sessions behind a page panel: page, entered, time on page, email, previous page."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from nilemetrics.tui.page_sessions import FetchError, PageSessions, SessionsFetcher


def duration_text(seconds: float | None) -> str:
    """``45 s``, ``3 min 05 s``, ``1 h 02 min``; empty when unknown."""
    if seconds is None:
        return ""
    whole = int(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


class PageSessionsScreen(ModalScreen[None]):
    """Fetches and lists the live sessions on some page types; r refreshes, Esc closes."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "dismiss", "Close"),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(self, title: str, page_types: list[str], fetcher: SessionsFetcher) -> None:
        super().__init__()
        self.title_text = title
        self.page_types = page_types
        self._fetcher = fetcher
        self.result: PageSessions | None = None

    def compose(self) -> ComposeResult:
        """A status line above the table of sessions."""
        with Vertical(id="sessions-box") as box:
            box.border_title = f"Live sessions · {self.title_text}"
            box.border_subtitle = "r refreshes · Esc closes"
            yield Static("loading…", id="sessions-status")
            table: DataTable[Text] = DataTable(id="sessions-table", cursor_type="row",
                                               zebra_stripes=True)
            yield table

    def on_mount(self) -> None:
        """Lay out the columns and ask the server."""
        table = self.query_one("#sessions-table", DataTable)
        for label in ("Page", "Entered", "On page", "Email", "Previous page"):
            table.add_column(label, key=label)
        table.focus()
        self.action_refresh()

    def action_refresh(self) -> None:
        """Ask the server again."""
        if not self.page_types:
            self._show_status("no live sessions on these pages")
            return
        self._show_status("loading…")
        self._load()

    @work(exclusive=True, group="page-sessions")
    async def _load(self) -> None:
        try:
            result = await self._fetcher(self.page_types)
        except FetchError as exc:
            self._show_status(f"could not list the sessions: {exc}")
            return
        self.result = result
        self._show(result)

    def _show_status(self, text: str) -> None:
        self.query_one("#sessions-status", Static).update(text)

    def _show(self, result: PageSessions) -> None:
        table = self.query_one("#sessions-table", DataTable)
        table.clear()
        for session in result.sessions:
            entered = (session.entered_at.astimezone().strftime("%H:%M:%S")
                       if session.entered_at else "")
            table.add_row(session.page_text, entered, duration_text(session.seconds_on_page),
                          session.email or "—", session.previous_page or "—",
                          key=session.session_id)
        shown, total = len(result.sessions), result.total
        count = f"{total} live" if shown == total else f"{total} live, the {shown} longest listed"
        self._show_status(f"{count} · on {', '.join(self.page_types)} · longest on the page first")

    async def action_dismiss(self, result: None = None) -> None:
        """Close the screen."""
        self.dismiss(result)
