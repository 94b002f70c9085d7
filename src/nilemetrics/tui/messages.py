"""Messages the feed worker posts to the app (small dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from nilemetrics.tui.feed import FeedEvent, Frame
from nilemetrics.tui.model import ErrorRow, Metrics


@dataclass
class ConnectionChanged(Message):
    """The feed's connection state changed (connecting, connected, lost, refused)."""

    event: FeedEvent


@dataclass
class MetricsReceived(Message):
    """A parsed ``metrics-update``; a newer one still queued supersedes it."""

    metrics: Metrics

    def can_replace(self, message: Message) -> bool:
        """Bursts of frames collapse into the latest (history is recorded by the worker)."""
        return isinstance(message, MetricsReceived)


@dataclass
class ErrorsReceived(Message):
    """A parsed ``payment-errors-update`` (the full current list, newest first)."""

    rows: list[ErrorRow]
    unusable: int = 0

    def can_replace(self, message: Message) -> bool:
        """Each update is the full list, so only the latest matters."""
        return isinstance(message, ErrorsReceived)


@dataclass
class HeartbeatReceived(Message):
    """A ``metrics-heartbeat``: the server is alive even if nothing changed."""

    frame: Frame


@dataclass
class FrameIgnored(Message):
    """A malformed or unknown frame was skipped."""

    reason: str


@dataclass
class FeedEnded(Message):
    """The feed stopped (after an auth refusal, or a recorded feed ran out)."""


@dataclass
class PanelChosen(Message):
    """The user chose a page panel (Enter or a click): show the sessions behind it."""

    panel_id: str
