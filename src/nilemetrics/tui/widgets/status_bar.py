"""The header: server, connection state, live count, firing alerts, data age, clock, marks."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.widgets import Label

from nilemetrics.tui.model import FiringAlert

#: Connection states (CSS classes ``-<state>`` on the state label).
STATES = ("connecting", "connected", "reconnecting", "unreachable", "refused", "ended")


class StatusBar(Horizontal):
    """Top line of the dashboard; the app sets its reactives, the .tcss styles them."""

    state: reactive[str] = reactive("connecting")
    retry_in: reactive[int | None] = reactive(None)
    address: reactive[str] = reactive("")
    data_age: reactive[str] = reactive("")
    clock: reactive[str] = reactive("")
    live_sessions: reactive[int | None] = reactive(None)
    stale: reactive[bool] = reactive(False)
    paused: reactive[bool] = reactive(False)
    alerts: reactive[tuple[FiringAlert, ...]] = reactive(())
    #: ``REPLAY 03:10`` while the screen shows the past (empty: live).
    replay: reactive[str] = reactive("")

    def compose(self) -> ComposeResult:
        """Labels left to right; the address shrinks first on a narrow terminal."""
        yield Label("nilemetrics", id="brand")
        yield Label("", id="replay-badge")
        yield Label("", id="address")
        yield Label("", id="conn-state")
        yield Label("", id="live")
        yield Label("", id="alerts-badge")
        yield Label("", id="updated")
        yield Label("STALE", id="stale-badge")
        yield Label("PAUSED · p resumes", id="paused-badge")
        yield Label("", id="clock")

    #: Set once the labels exist (``is_mounted`` is still false during ``on_mount``).
    _ready = False

    def on_mount(self) -> None:
        """Render the initial state."""
        self._ready = True
        self._render_state()
        self.watch_address(self.address)
        self.watch_data_age(self.data_age)
        self.watch_clock(self.clock)
        self.watch_live_sessions(self.live_sessions)
        self.watch_stale(self.stale)
        self.watch_paused(self.paused)
        self.watch_alerts(self.alerts)
        self.watch_replay(self.replay)

    def state_text(self) -> str:
        """The connection state as shown, e.g. ``reconnecting in 4s``."""
        retry = f" · reconnecting in {self.retry_in}s" if self.retry_in is not None else ""
        if self.state == "connected":
            return "● connected"
        if self.state == "connecting":
            return "◌ connecting…"
        if self.state == "reconnecting":
            return f"○ connection lost{retry or ' · reconnecting…'}"
        if self.state == "unreachable":
            return f"✕ server unreachable{retry}"
        if self.state == "refused":
            return "✕ auth refused: check --token"
        return "✕ feed ended"

    def _render_state(self) -> None:
        if not self._ready:
            return
        label = self.query_one("#conn-state", Label)
        label.update(self.state_text())
        for state in STATES:
            label.set_class(state == self.state, f"-{state}")

    def watch_state(self, _state: str) -> None:
        """Show the new connection state."""
        self._render_state()

    def watch_retry_in(self, _retry_in: int | None) -> None:
        """Show the reconnect countdown."""
        self._render_state()

    def watch_address(self, address: str) -> None:
        """Show the server address."""
        if self._ready:
            self.query_one("#address", Label).update(f"server {address}" if address else "")

    def watch_live_sessions(self, live: int | None) -> None:
        """Show the number of live sessions."""
        if self._ready:
            self.query_one("#live", Label).update(f"{'—' if live is None else live} live")

    def watch_data_age(self, data_age: str) -> None:
        """Show how old the data on screen is (from the last frame, heartbeats included)."""
        if self._ready:
            text = f"data {data_age}" if data_age else "no data yet"
            self.query_one("#updated", Label).update(text)

    def watch_clock(self, clock: str) -> None:
        """Show the local time."""
        if self._ready:
            self.query_one("#clock", Label).update(clock)

    def watch_stale(self, stale: bool) -> None:
        """Show or hide the stale marker."""
        self.set_class(stale, "-stale")

    def watch_paused(self, paused: bool) -> None:
        """Show or hide the paused marker."""
        self.set_class(paused, "-paused")

    def watch_replay(self, replay: str) -> None:
        """Show or hide the replay marker (the connection state is not the screen's then)."""
        self.set_class(bool(replay), "-replay")
        if self._ready:
            self.query_one("#replay-badge", Label).update(replay)

    def alerts_text(self) -> str:
        """The firing alerts as the header shows them: ``⚠ payment errors: 7 > 5``."""
        if not self.alerts:
            return ""
        if len(self.alerts) == 1:
            alert = self.alerts[0]
            condition = f": {alert.condition_text}" if alert.condition_text else ""
            return f"⚠ {alert.rule}{condition}"
        return f"⚠ {len(self.alerts)} alerts: {', '.join(a.rule for a in self.alerts)}"

    def watch_alerts(self, alerts: tuple[FiringAlert, ...]) -> None:
        """Show the server's firing alert rules (hidden when none fires)."""
        self.set_class(bool(alerts), "-alerting")
        if not self._ready:
            return
        badge = self.query_one("#alerts-badge", Label)
        badge.update(self.alerts_text())
        badge.tooltip = "\n".join(
            f"{a.rule}: {a.metric} {a.condition_text}".rstrip()
            + (f" since {a.since:%H:%M:%S} UTC" if a.since else "")
            for a in alerts
        ) or None
