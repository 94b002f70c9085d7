"""Settings shared by the server, the dashboard and the CLI.

The CLI builds one :class:`Settings` and passes it in; nothing reads the
environment at import time.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from nilemetrics.durations import parse_duration
from nilemetrics.protocol.bodies import MAX_BODY_BYTES

APP_NAME = "nilemetrics"
TOKEN_FILE_NAME = "dashboard-token"

#: Shortest cleanup tick accepted: below it the cleanup loop would keep a core busy.
MIN_CLEANUP_INTERVAL = 1.0

IpStorage = Literal["full", "anonymized", "none"]


def default_data_dir() -> Path:
    """Where the default SQLite database lives (the user's data directory)."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def default_config_dir() -> Path:
    """Where the generated dashboard token is stored (the user's config directory)."""
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Everything configurable, from ``NILEMETRICS_*`` variables or CLI flags."""

    model_config = SettingsConfigDict(env_prefix="NILEMETRICS_", extra="ignore")

    database_url: str | None = None
    """SQLAlchemy URL; PostgreSQL as ``postgresql+psycopg://…``. Default: SQLite in data_dir."""

    data_dir: Path = Field(default_factory=default_data_dir)
    """Directory of the default SQLite database."""

    config_dir: Path = Field(default_factory=default_config_dir)
    """Directory where a generated dashboard token is kept (mode 0600)."""

    dashboard_token: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Bearer token(s) for the dashboard endpoints and the WebSocket, comma-separated."""

    live_window: float = 90.0
    """Seconds since a session's last event during which it counts as live."""

    session_timeout: float = 1800.0
    """Seconds of inactivity after which cleanup ends a session."""

    cleanup_interval: float = 15.0
    """Seconds between cleanup ticks (each also sends ``metrics-heartbeat``)."""

    rollups: bool = True
    """Keep per-minute history rollups (``GET /history``, replay); counts only, no personal data."""

    rollup_interval: float = Field(default=60.0, gt=0)
    """Most seconds between two rollup ticks (each also wakes at the start of every minute)."""

    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Shop origins allowed to call the ingestion API cross-origin (with credentials)."""

    ip_storage: IpStorage = "anonymized"
    """How client IPs are stored: ``full``, ``anonymized`` (IPv4 /24, IPv6 /48) or ``none``."""

    honour_privacy_signals: bool = True
    """Count requests with ``Sec-GPC: 1`` or ``DNT: 1`` without storing personal data."""

    max_body_bytes: int = MAX_BODY_BYTES
    """Largest accepted ingestion request body."""

    batch_max_events: int = 1000
    """Most events one group commit writes."""

    writer_process: bool = True
    """Apply event batches in a child process (no GIL contention with the HTTP side)."""

    push_interval: float = 0.25
    """Least time between two ``metrics-update`` frames (pushes are coalesced)."""

    refresh_interval: float = 2.0
    """How often live numbers are recomputed without events (sessions leaving the window)."""

    sqlite_busy_timeout: float = 2.0
    """Seconds a SQLite write waits for a lock held by another process; then 503."""

    write_timeout: float = Field(default=5.0, gt=0)
    """Most seconds a request waits for its events to be written; then 503 and they never are.

    (A batch whose commit has begun is waited for: its outcome is the answer.)
    """

    writer_queue_max: int = Field(default=10_000, ge=500)
    """Most events waiting for the writer; beyond that, ingestion gets 503 at once."""

    writer_client_share: float = Field(default=0.5, gt=0, le=1)
    """Most of the writer's queue one client (address) may fill; beyond it, 429 at once.

    The rest stays free for other clients. Never less than one full batch request
    (500 events). 1 turns the per-client cap off.
    """

    def writer_client_queue_max(self) -> int:
        """Most events one client may have waiting for the writer."""
        return max(min(500, self.writer_queue_max),
                   int(self.writer_queue_max * self.writer_client_share))

    http_request_timeout: float = Field(default=15.0, gt=0)
    """Seconds a client has to send a whole request (and its first one after connecting).

    Slower connections get 408 and are closed, so idle and half-sent ones (slowloris)
    cannot hold descriptors for good.
    """

    http_keep_alive_timeout: float = Field(default=5.0, gt=0)
    """Seconds an idle kept-alive connection stays open between requests."""

    http_max_header_bytes: int = Field(default=32 * 1024, ge=4096)
    """Largest request line plus headers; beyond it 431 and the connection is closed."""

    http_max_connections: int = Field(default=900, ge=1)
    """Most open connections; beyond it new ones get 503 at once.

    Keep it below the open-files limit (``ulimit -n``): the database needs descriptors too.
    """

    workers: int = Field(default=1, ge=1)
    """Server processes sharing the port (``serve``); above 1 needs PostgreSQL.

    Limits such as ``http_max_connections`` hold per process.
    """

    forwarded_allow_ips: str = "127.0.0.1"
    """Proxies whose X-Forwarded-For is trusted for the client IP (uvicorn's setting)."""

    alerts: Path | None = None
    """TOML file of alert rules the server evaluates and notifies about (none: no alerts)."""

    alerts_interval: float = Field(default=5.0, gt=0, le=5)
    """Seconds between two evaluations of the alert rules (at most 5); also the first retry
    delay of a notification that could not be delivered (doubling up to 5 minutes)."""

    metrics_endpoint: bool = True
    """Serve ``GET /metrics`` (Prometheus) and keep its per-process counters."""

    metrics_public: bool = False
    """Serve ``GET /metrics`` without the dashboard token (for a scraper on a private network)."""

    @field_validator("dashboard_token", "allowed_origins", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator(
        "live_window", "session_timeout", "cleanup_interval", "push_interval",
        "refresh_interval", "sqlite_busy_timeout", "write_timeout", "http_request_timeout",
        "http_keep_alive_timeout", "alerts_interval", "rollup_interval", mode="before",
    )
    @classmethod
    def _duration(cls, value: object) -> object:
        if isinstance(value, str | int | float):
            return parse_duration(value)
        return value

    @field_validator("cleanup_interval")
    @classmethod
    def _cleanup_interval(cls, value: float) -> float:
        if value < MIN_CLEANUP_INTERVAL:
            raise ValueError(
                f"must be at least {MIN_CLEANUP_INTERVAL:g}s (each tick queries the "
                f"database; a shorter one keeps the server busy), got {value:g}s"
            )
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ValueError(f"origin {origin!r} must start with http:// or https://")
        return [origin.rstrip("/") for origin in value]

    def effective_database_url(self) -> str:
        """The configured database URL, or the default SQLite file in ``data_dir``.

        The engine creates the file's directory (or says why it cannot).
        """
        if self.database_url:
            return normalise_database_url(self.database_url)
        return f"sqlite:///{self.data_dir / 'nilemetrics.db'}"

    @property
    def token_file(self) -> Path:
        """Path of the token generated when none is configured."""
        return self.config_dir / TOKEN_FILE_NAME


def normalise_database_url(url: str) -> str:
    """Make ``postgresql://`` and ``postgres://`` URLs use the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def read_stored_token(config_dir: Path | None = None) -> str | None:
    """The token a server generated on this machine, if any (the dashboard uses it too)."""
    path = (config_dir or default_config_dir()) / TOKEN_FILE_NAME
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return token or None


def ensure_dashboard_tokens(settings: Settings) -> tuple[list[str], str | None]:
    """Return the accepted tokens, generating and storing one if none is configured.

    The second item is the freshly generated token (to print once) or ``None``.
    """
    if settings.dashboard_token:
        return list(settings.dashboard_token), None
    stored = read_stored_token(settings.config_dir)
    if stored:
        return [stored], None
    token = secrets.token_urlsafe(32)
    settings.config_dir.mkdir(parents=True, exist_ok=True)
    path = settings.token_file
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    return [token], token
