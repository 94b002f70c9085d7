"""Customer: a person's sessions (by email, phone or user id) and one session's journey."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Label, Static

from nilemetrics.protocol.history import JourneyOut, SessionOut, SessionsOut
from nilemetrics.tui.history_api import ApiError
from nilemetrics.tui.journey import lookup_params, summary, timeline, who
from nilemetrics.tui.view_keys import view_bindings

if TYPE_CHECKING:
    from nilemetrics.tui.app import NileMetricsApp

#: How each kind of timeline line looks (theme-independent Rich styles).
KIND_STYLE = {"page": "", "checkout": "bold", "payment": "bold", "error": "bold red",
              "paid": "bold green", "end": "italic"}
KIND_MARK = {"page": "·", "checkout": "▸", "payment": "▸", "error": "✕", "paid": "✓",
             "end": "■"}


def session_cells(session: SessionOut) -> list[str]:
    """A row of the sessions list."""
    started = session.started_at.astimezone().strftime("%Y-%m-%d %H:%M") if (
        session.started_at) else ""
    state = "live" if session.live else "ended"
    page = session.page_type or ""
    if session.page_identifier:
        page += f" · {session.page_identifier}"
    return [started, state, page, str(session.page_visits), str(session.checkouts),
            str(session.payment_errors), "yes" if session.paid else "no"]


def timeline_text(journey: JourneyOut) -> Text:
    """The journey as styled lines, oldest first."""
    text = Text()
    text.append(summary(journey) + "\n\n", style="bold")
    for line in timeline(journey):
        when = line.at.astimezone().strftime("%H:%M:%S") if line.at else "        "
        text.append(f"{when}  {KIND_MARK[line.kind]} ", style="dim")
        text.append(line.text + "\n", style=KIND_STYLE[line.kind])
    return text


class CustomerScreen(Screen[None]):
    """Type an email or phone, or come from an error row (``j``): sessions and the journey."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "app.quit", "Quit"),
        *view_bindings(),
        Binding("slash", "search", "Search"),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.found: SessionsOut | None = None
        self.journey: JourneyOut | None = None
        self.query_text = ""
        self._session_id: str | None = None
        self._pending: tuple[str, str] | None = None

    @property
    def dashboard(self) -> NileMetricsApp:
        """The app: the API client."""
        return cast("NileMetricsApp", self.app)

    def compose(self) -> ComposeResult:
        """The search line, the sessions list and the journey beside it."""
        yield Label("Customer · email, phone or user id: Enter looks it up, Esc leaves the "
                    "box · j on a payment error comes here", id="customer-title",
                    classes="view-title")
        with Horizontal(id="customer-search"):
            yield Label("Find:", id="customer-label")
            yield Input(placeholder="ann@example.com or +49 170 1234567", id="customer-input")
        yield Label("", id="customer-status")
        with Horizontal(id="customer-body"):
            table: DataTable[str] = DataTable(id="customer-sessions", cursor_type="row",
                                              zebra_stripes=True)
            table.border_title = "Sessions"
            yield table
            with VerticalScroll(id="journey-box") as box:
                box.border_title = "Journey"
                yield Static("", id="journey")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        """Lay out the sessions list; type at once."""
        table = self.query_one("#customer-sessions", DataTable)
        for label in ("Started", "State", "Last page", "Pages", "Checkouts", "Errors",
                      "Paid"):
            table.add_column(label, key=label)
        search = self.query_one("#customer-input", Input)
        search.cursor_blink = False
        if self._pending is not None:
            person, session_id = self._pending
            self._pending = None
            search.value = person
            table.focus()
            self._load(person, session_id)
        else:
            search.focus()

    # ------------------------------------------------------------- entry

    def show_session(self, session_id: str, person: str = "") -> None:
        """Show one session's journey (from an error row), and the person's other sessions."""
        self._session_id = session_id
        self.query_text = person
        if not self.is_mounted:
            self._pending = (person, session_id)  # loaded once the widgets exist
            return
        self.query_one("#customer-input", Input).value = person
        self.query_one("#customer-sessions", DataTable).focus()
        self._load(person, session_id)

    @on(Input.Submitted, "#customer-input")
    def _submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        self.query_text = text
        self._session_id = None
        self.query_one("#customer-sessions", DataTable).focus()
        self._load(text, None)

    def on_key(self, event: events.Key) -> None:
        """Escape in the search box leaves it: the number keys switch views again."""
        search = self.query_one("#customer-input", Input)
        if event.key == "escape" and search.has_focus:
            event.stop()
            self.query_one("#customer-sessions", DataTable).focus()

    def action_search(self) -> None:
        """Type another email or phone."""
        self.query_one("#customer-input", Input).focus()

    def action_refresh(self) -> None:
        """Ask the server again for what is shown."""
        if self.query_text or self._session_id:
            self._load(self.query_text, self._session_id)

    # ------------------------------------------------------------- loading

    def _status(self, text: str) -> None:
        self.query_one("#customer-status", Label).update(text)

    @work(exclusive=True, group="customer")
    async def _load(self, text: str, session_id: str | None) -> None:
        api = self.dashboard.api
        self._status("loading…")
        try:
            found = await api.sessions(**lookup_params(text)) if text else None
            if session_id is None and found is not None and found.sessions:
                session_id = found.sessions[0].session_id
            journey = await api.journey(session_id) if session_id else None
        except ApiError as exc:
            self._status(f"could not look it up: {exc}")
            return
        self.found = found
        if found is None and journey is not None:
            # Nobody to look up (an anonymous session): list the one session shown.
            found = SessionsOut(total=1, offset=0, limit=1, sessions=[journey.session])
        self._show_sessions(found, session_id)
        if journey is None:
            self._status(f"no sessions for {text}")
            self.query_one("#journey", Static).update("")
            self.journey = None
            return
        self._show_journey(journey)
        count = found.total if found is not None else 1
        person = text or who(journey.session)
        self._status(f"{count} session(s) of {person}, newest first · Enter shows one")

    def _show_sessions(self, found: SessionsOut | None, current: str | None) -> None:
        table = self.query_one("#customer-sessions", DataTable)
        table.clear()
        if found is None:
            return
        for session in found.sessions:
            table.add_row(*session_cells(session), key=session.session_id)
        for index, session in enumerate(found.sessions):
            if session.session_id == current:
                table.move_cursor(row=index)

    def _show_journey(self, journey: JourneyOut) -> None:
        self.journey = journey
        self._session_id = journey.session.session_id
        self.query_one("#journey", Static).update(timeline_text(journey))

    @on(DataTable.RowSelected, "#customer-sessions")
    def _session_chosen(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value
        if key and key != self._session_id:
            self._load_journey(key)

    @work(exclusive=True, group="customer")
    async def _load_journey(self, session_id: str) -> None:
        try:
            journey = await self.dashboard.api.journey(session_id)
        except ApiError as exc:
            self._status(f"could not load the journey: {exc}")
            return
        self._show_journey(journey)
