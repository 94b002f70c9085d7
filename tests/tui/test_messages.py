"""Coalescing of the feed's messages: a burst collapses into its latest state (no app)."""

from __future__ import annotations

from nilemetrics.tui.feed import Frame
from nilemetrics.tui.messages import ErrorsReceived, HeartbeatReceived, MetricsReceived
from nilemetrics.tui.model import Metrics


def test_a_newer_metrics_frame_replaces_a_queued_one() -> None:
    """Only the latest numbers matter; rows and heartbeats are not dropped for them."""
    newer = MetricsReceived(Metrics(homepage=2))
    assert newer.can_replace(MetricsReceived(Metrics(homepage=1)))
    assert not newer.can_replace(ErrorsReceived([]))
    assert not newer.can_replace(HeartbeatReceived(Frame("metrics-heartbeat", {})))


def test_a_newer_error_list_replaces_a_queued_one() -> None:
    """Each error update is the full list, so a queued one is superseded, numbers are not."""
    newer = ErrorsReceived([], unusable=1)
    assert newer.can_replace(ErrorsReceived([]))
    assert not newer.can_replace(MetricsReceived(Metrics()))


def test_heartbeats_are_never_dropped() -> None:
    """Each heartbeat is a sign of life: none replaces another."""
    beat = HeartbeatReceived(Frame("metrics-heartbeat", {}))
    assert not beat.can_replace(HeartbeatReceived(Frame("metrics-heartbeat", {})))
