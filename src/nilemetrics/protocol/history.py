"""History, session lookups and customer journeys (dashboard endpoints, bearer token).

Shapes of ``GET /history``, ``GET /sessions`` (lookup by person or by page) and
``GET /sessions/{id}``. Like every pushed body, each field has a default so that
dashboards parse leniently (``nilemetrics.protocol.lenient``).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from nilemetrics.protocol.pushed import Count, Pushed


class Step(StrEnum):
    """Width of one history bucket."""

    MINUTE = "1m"
    FIVE_MINUTES = "5m"
    HOUR = "1h"
    DAY = "1d"


#: Seconds per step.
STEP_SECONDS: dict[Step, int] = {
    Step.MINUTE: 60, Step.FIVE_MINUTES: 300, Step.HOUR: 3600, Step.DAY: 86400,
}


class HistoryPoint(Pushed):
    """One bucket of history, ``at`` its start (UTC).

    Live sessions are the largest number seen in the bucket (sampled each
    minute); the other figures are what happened in it.
    """

    at: datetime | None = None
    live_sessions: Count = Field(default=0, alias="liveSessions")
    pages: dict[str, Count] = Field(
        default_factory=dict,
        description="Live sessions per page type (the largest sample in the bucket).",
    )
    sessions_started: Count = Field(default=0, alias="sessionsStarted")
    page_visits: Count = Field(default=0, alias="pageVisits")
    checkouts_started: Count = Field(default=0, alias="checkoutsStarted")
    payment_errors: Count = Field(default=0, alias="paymentErrors")
    payment_errors_by_code: dict[str, Count] = Field(
        default_factory=dict, alias="paymentErrorsByCode"
    )
    payment_successes: Count = Field(default=0, alias="paymentSuccesses")
    amount_paid: float = Field(default=0.0, alias="amountPaid",
                               description="Rounded to cents.")
    amount_failed: float = Field(default=0.0, alias="amountFailed",
                                 description="Amount of failed payment attempts, to cents.")


class HistoryOut(Pushed):
    """Answer of ``GET /history``: buckets from ``since`` to ``until``, oldest first.

    Every bucket of the range is present (zeros where nothing happened).
    """

    since: datetime | None = None
    until: datetime | None = None
    step: Step = Step.MINUTE
    points: list[HistoryPoint] = Field(default_factory=list)


class SessionOut(Pushed):
    """One session in a lookup: who, when, where it is or was, what it did."""

    session_id: str = Field(default="", alias="sessionId")
    user_id: str | None = Field(default=None, alias="userId")
    email: str | None = None
    phone: str | None = None
    started_at: datetime | None = Field(default=None, alias="startedAt")
    last_activity: datetime | None = Field(default=None, alias="lastActivity")
    ended_at: datetime | None = Field(default=None, alias="endedAt")
    live: bool = False
    page_type: str | None = Field(default=None, alias="pageType",
                                  description="Its current (or last) page.")
    page_identifier: str | None = Field(default=None, alias="pageIdentifier")
    page_visits: Count = Field(default=0, alias="pageVisits")
    checkouts: Count = 0
    payment_errors: Count = Field(default=0, alias="paymentErrors")
    paid: bool = False


class SessionsOut(Pushed):
    """Answer of a session lookup: newest first, one page of it."""

    total: Count = Field(default=0, description="Sessions matching (all of them).")
    offset: Count = 0
    limit: Count = 0
    sessions: list[SessionOut] = Field(default_factory=list)


class JourneyPage(Pushed):
    """One page of a journey."""

    page_type: str = Field(default="", alias="pageType")
    page_identifier: str | None = Field(default=None, alias="pageIdentifier")
    page_url: str | None = Field(default=None, alias="pageUrl")
    entered_at: datetime | None = Field(default=None, alias="enteredAt")
    exited_at: datetime | None = Field(default=None, alias="exitedAt")
    seconds_on_page: float | None = Field(
        default=None, alias="secondsOnPage", description="Up to now for the open page."
    )


class JourneyAttempt(Pushed):
    """One failed payment attempt of a checkout."""

    attempt: Count = 0
    at: datetime | None = None
    error_code: str | None = Field(default=None, alias="errorCode")
    error_message: str | None = Field(default=None, alias="errorMessage")
    amount: float | None = None
    payment_method: str | None = Field(default=None, alias="paymentMethod")
    error_details: dict[str, Any] | None = Field(default=None, alias="errorDetails")


class JourneyCheckout(Pushed):
    """One checkout of a journey, with every payment attempt that failed."""

    id: int | None = None
    status: str = ""
    started_at: datetime | None = Field(default=None, alias="startedAt")
    payment_started_at: datetime | None = Field(default=None, alias="paymentStartedAt")
    completed_at: datetime | None = Field(default=None, alias="completedAt")
    total_amount: float | None = Field(default=None, alias="totalAmount")
    payment_method: str | None = Field(default=None, alias="paymentMethod")
    item_count: int | None = Field(default=None, alias="itemCount")
    checkout_items: list[Any] | None = Field(default=None, alias="checkoutItems")
    errors: list[JourneyAttempt] = Field(default_factory=list)


class JourneyOut(Pushed):
    """Answer of ``GET /sessions/{id}``: what one session did, in order."""

    session: SessionOut = Field(default_factory=SessionOut)
    browser: str = Field(default="", description='e.g. "Chrome 131 · Windows".')
    device: str = Field(default="", description="desktop, mobile, tablet or bot.")
    user_agent: str | None = Field(default=None, alias="userAgent")
    total_seconds: float | None = Field(
        default=None, alias="totalSeconds", description="From start to end (or to now)."
    )
    pages: list[JourneyPage] = Field(default_factory=list)
    checkouts: list[JourneyCheckout] = Field(default_factory=list)
    left_on: str | None = Field(
        default=None, alias="leftOn", description="The last page of an ended session."
    )
