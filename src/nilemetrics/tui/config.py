"""The dashboard's configuration, built by the CLI and passed to the app."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class DashboardConfig:
    """Where to connect and how the dashboard behaves."""

    url: str = "http://127.0.0.1:8000"
    """The server's address (``http://host:port``)."""

    token: str | None = None
    """Dashboard bearer token; ``None`` connects without one (the server will refuse)."""

    alert_errors_per_min: float = 5.0
    """Payment errors per minute above which the Payment errors panel alerts."""

    heartbeat_interval: float = 15.0
    """The server's heartbeat interval; no frame for two of them marks the data stale."""

    export_dir: Path = field(default_factory=Path.cwd)
    """Where ``e`` writes CSV files."""

    history_seconds: float = 600.0
    """Span of the sparklines."""

    history_bucket_seconds: float = 10.0
    """Width of one sparkline bar before it is fitted to the panel."""

    notice: str | None = None
    """A message shown for a while at start, in the notice line above the table."""

    shop_url: str | None = None
    """The demo shop's address, shown on a line of its own for as long as the demo runs."""

    history_refresh_seconds: float = 30.0
    """How often the History and Report views ask the server again while shown."""

    replay_at: datetime | None = None
    """Open in replay at this minute (``watch --at``) instead of live."""

    @property
    def address(self) -> str:
        """The server address as shown in the header (scheme and trailing slash dropped)."""
        address = self.url.strip()
        for prefix in ("http://", "https://", "ws://", "wss://"):
            if address.startswith(prefix):
                address = address[len(prefix):]
                break
        return address.rstrip("/")
