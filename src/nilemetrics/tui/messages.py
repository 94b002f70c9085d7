"""Messages of the dashboard (small dataclasses).

The feed worker posts the feed's messages to the app, which keeps what every
screen may need and routes them on to the live screen. A routed message does
not bubble: from the screen it would come back up to the app.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from nilemetrics.tui.feed import FeedEvent, Frame
from nilemetrics.tui.model import ErrorRow, Metrics


@dataclass
class ConnectionChanged(Message, bubble=False):
    """The feed's connection state changed (connecting, connected, lost, refused)."""

    event: FeedEvent


@dataclass
class MetricsReceived(Message, bubble=False):
    """A parsed ``metrics-update``; a newer one still queued supersedes it."""

    metrics: Metrics

    def can_replace(self, message: Message) -> bool:
        """Bursts of frames collapse into the latest (history is recorded by the worker)."""
        return isinstance(message, MetricsReceived)


@dataclass
class ErrorsReceived(Message, bubble=False):
    """A parsed ``payment-errors-update`` (the full current list, newest first)."""

    rows: list[ErrorRow]
    unusable: int = 0

    def can_replace(self, message: Message) -> bool:
        """Each update is the full list, so only the latest matters."""
        return isinstance(message, ErrorsReceived)


@dataclass
class HeartbeatReceived(Message, bubble=False):
    """A ``metrics-heartbeat``: the server is alive even if nothing changed."""

    frame: Frame


@dataclass
class FrameIgnored(Message):
    """A malformed or unknown frame was skipped."""

    reason: str


@dataclass
class FeedEnded(Message, bubble=False):
    """The feed stopped (after an auth refusal, or a recorded feed ran out)."""


@dataclass
class Notice(Message, bubble=False):
    """A line for the notice line above the table (a toast would cover the table)."""

    text: str
    severity: str = "information"
    """``information``, ``warning`` or ``error`` (the line's colour)."""
    timeout: float | None = 10
    """Seconds until it goes away; ``None``: it stays."""


@dataclass
class PanelChosen(Message):
    """The user chose a page panel (Enter or a click): show the sessions behind it."""

    panel_id: str
