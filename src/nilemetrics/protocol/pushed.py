"""Bodies the server pushes (WebSocket, Socket.IO) and serves to dashboards.

The server builds them; the dashboard parses them (leniently, see
``nilemetrics.protocol.lenient``), which is why every field has a default.
Answers still declare every field as present (``json_schema_serialization_defaults_required``):
the server always sends them all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: A count of sessions, events or rows: a JSON integer, never negative.
Count = Annotated[int, Field(strict=True, ge=0)]
#: A share between 0 and 1 (a JSON number).
Share = Annotated[float, Field(strict=True, ge=0, le=1)]


class Pushed(BaseModel):
    """A body the server sends: filled by name or alias, every field always sent."""

    model_config = ConfigDict(
        populate_by_name=True, json_schema_serialization_defaults_required=True
    )


class FiringAlert(Pushed):
    """An alert rule firing now (``serve --alerts``)."""

    rule: str = ""
    metric: str = ""
    value: Annotated[float, Field(strict=True)] | None = Field(
        default=None, description="The metric at the rule's last evaluation."
    )
    threshold: Annotated[float, Field(strict=True)] | None = None
    direction: Literal["above", "below"] = "above"
    window_seconds: float | None = Field(
        default=None,
        alias="windowSeconds",
        description="The rule's window; null for live_sessions (now).",
    )
    since: datetime | None = Field(default=None, description="When the rule started firing.")


class LiveMetrics(Pushed):
    """Live numbers: sessions per page now, and the last hour's payment figures.

    Body of GET ``/live-metrics`` and of ``metrics-update`` frames.
    """

    homepage: Count = 0
    categories: dict[str, Count] = Field(
        default_factory=dict, description="Live sessions per category id, busiest first."
    )
    offers: dict[str, Count] = Field(
        default_factory=dict, description="Live sessions per offer id, busiest first."
    )
    product: Count = 0
    search: Count = 0
    checkout: Count = 0
    payment: Count = 0
    payment_error: Count = Field(default=0, alias="paymentError")
    other: Count = 0
    pages: dict[str, Count] = Field(
        default_factory=dict,
        description="Live sessions per page type, for every page type (known or not); "
        "the values add up to liveSessions.",
    )
    platforms: dict[str, Count] = Field(
        default_factory=dict,
        description="Live sessions per platform (web, ios, android, other; always all four), "
        "from session/start's platform; sessions that did not say are web. The values add "
        "up to liveSessions.",
    )
    live_sessions: Count = Field(default=0, alias="liveSessions")
    checkouts_last_hour: Count = Field(default=0, alias="checkoutsLastHour")
    payment_errors_last_hour: Count = Field(default=0, alias="paymentErrorsLastHour")
    payment_successes_last_hour: Count = Field(default=0, alias="paymentSuccessesLastHour")
    payment_failures_last_hour: Count = Field(default=0, alias="paymentFailuresLastHour")
    payment_success_rate: Share | None = Field(
        default=None,
        alias="paymentSuccessRate",
        description="Of the checkouts whose payment reached an outcome in the last hour, the "
        "share that paid; null without an outcome.",
    )
    sessions_last_hour: Count = Field(
        default=0,
        alias="sessionsLastHour",
        description="Funnel step 1: sessions that reported a page and were active in the "
        "last hour.",
    )
    checkout_sessions_last_hour: Count = Field(
        default=0,
        alias="checkoutSessionsLastHour",
        description="Funnel step 2: of those, sessions that started a checkout in the last hour.",
    )
    payment_sessions_last_hour: Count = Field(
        default=0,
        alias="paymentSessionsLastHour",
        description="Funnel step 3: of those, sessions whose checkout reached payment "
        "(a payment start, error or success).",
    )
    paid_sessions_last_hour: Count = Field(
        default=0,
        alias="paidSessionsLastHour",
        description="Funnel step 4: of those, sessions whose checkout was paid.",
    )
    custom_events: dict[str, Count] = Field(
        default_factory=dict,
        alias="customEvents",
        description="Custom events (track/event) per name in the last 5 minutes, most first.",
    )
    live_window_seconds: float = Field(default=0.0, alias="liveWindowSeconds")
    alerts: list[FiringAlert] = Field(
        default_factory=list,
        description="Alert rules firing now, longest first (empty without serve --alerts).",
    )
    last_updated: datetime | None = Field(default=None, alias="lastUpdated")


class PaymentErrorRow(Pushed):
    """One payment error with its checkout context (snake_case, as the old API).

    Rows of GET ``/payment-errors`` and of ``payment-errors-update`` frames.
    """

    id: int | None = None
    session_id: str | None = None
    attempt: int | None = None
    email: str | None = None
    phone: str | None = None
    checkout_items: list[Any] | None = None
    item_count: int | None = Field(
        default=None,
        description="Items in the checkout (the length of checkout_items when it was sent).",
    )
    total_amount: float | None = Field(
        default=None, description="Amount rounded to cents, as a JSON number (stored exactly)."
    )
    payment_method: str | None = None
    payment_error_at: datetime | None = None
    error_code: str | None = None
    error_message: str | None = None
    error_details: dict[str, Any] | None = None
    ip_address: str | None = None
    user_agent: str | None = None
    checkout_status: str | None = None


class Heartbeat(Pushed):
    """Body of ``metrics-heartbeat``: the server is alive, and how often it says so."""

    timestamp: datetime | None = None
    interval_seconds: float | None = Field(default=None, alias="intervalSeconds")


class Notice(Pushed):
    """Body of an ``error`` frame: the server could not use a frame the client sent."""

    message: str = ""


class PageSessionOut(Pushed):
    """One live session on a page: where it is, since when, who, and where it came from."""

    session_id: str = Field(default="", alias="sessionId")
    page_type: str = Field(default="", alias="pageType")
    page_identifier: str | None = Field(default=None, alias="pageIdentifier")
    page_url: str | None = Field(default=None, alias="pageUrl")
    entered_at: datetime | None = Field(
        default=None,
        alias="enteredAt",
        description="When the session entered the page (its open page visit); null when it "
        "got there without a page visit (a checkout or payment event).",
    )
    seconds_on_page: float | None = Field(default=None, alias="secondsOnPage")
    last_activity: datetime | None = Field(default=None, alias="lastActivity")
    email: str | None = Field(
        default=None, description="Only when the shop sent it for a logged-in customer."
    )
    previous_page_type: str | None = Field(
        default=None,
        alias="previousPageType",
        description="The page visited before this one, if any.",
    )
    previous_page_identifier: str | None = Field(default=None, alias="previousPageIdentifier")


class PageSessionsOut(Pushed):
    """The live sessions on some pages, longest on the page first."""

    total: Count = Field(
        default=0, description="Live sessions on those pages (all of them, not only listed)."
    )
    sessions: list[PageSessionOut] = Field(default_factory=list)
