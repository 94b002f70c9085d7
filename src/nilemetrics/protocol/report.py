"""The session-analytics report: ``GET /report`` and ``nilemetrics report --json``.

Both come from one implementation (``nilemetrics.server.reports.build_report``).
Amounts are exact decimal text (``"12.50"``), as the CLI has always printed them;
shares are numbers between 0 and 1, null where there is nothing to divide by.
"""

from __future__ import annotations

from pydantic import Field

from nilemetrics.protocol.pushed import Count, Pushed, Share


class PageTime(Pushed):
    """Average time on one page type (closed visits of the period)."""

    page_type: str = Field(default="", alias="pageType")
    visits: Count = 0
    avg_seconds: float = Field(default=0.0, alias="avgSeconds")


class IdentifierTime(Pushed):
    """Average time on one category or offer."""

    identifier: str | None = None
    visits: Count = 0
    avg_seconds: float = Field(default=0.0, alias="avgSeconds")


class TimeOnPage(Pushed):
    """Time on page per page type, and per category and offer; busiest first."""

    by_page_type: list[PageTime] = Field(default_factory=list, alias="byPageType")
    by_category: list[IdentifierTime] = Field(default_factory=list, alias="byCategory")
    by_offer: list[IdentifierTime] = Field(default_factory=list, alias="byOffer")


class FunnelStep(Pushed):
    """One step of the funnel: sessions → checkout → payment → success."""

    step: str = ""
    sessions: Count = 0
    drop_off: int | None = Field(default=None, alias="dropOff",
                                 description="Sessions lost since the step before.")
    drop_off_rate: Share | None = Field(default=None, alias="dropOffRate")
    conversion: Share | None = Field(default=None, description="Share of the first step.")


class AbandonmentPoint(Pushed):
    """A last page of sessions that ended in the period without paying."""

    page_type: str = Field(default="", alias="pageType")
    page_identifier: str | None = Field(default=None, alias="pageIdentifier")
    sessions: Count = 0
    share: Share | None = None


class ErrorCodeFigures(Pushed):
    """One payment error code: errors, checkouts, amounts at stake and recovered."""

    error_code: str = Field(default="", alias="errorCode")
    errors: Count = 0
    checkouts: Count = 0
    amount_at_stake: str = Field(default="0.00", alias="amountAtStake")
    amount_recovered: str = Field(default="0.00", alias="amountRecovered",
                                  description="Of that, what was paid in the end.")


class RetryStep(Pushed):
    """Checkouts that failed a given number of times, and how many of them paid."""

    failures: Count = 0
    checkouts: Count = 0
    succeeded: Count = 0
    share_of_failed_checkouts: Share | None = Field(default=None, alias="shareOfFailedCheckouts")


class Retries(Pushed):
    """Of the checkouts that failed at least once: how many paid, after how many failures."""

    failed_checkouts: Count = Field(default=0, alias="failedCheckouts")
    succeeded_after_retry: Count = Field(default=0, alias="succeededAfterRetry")
    succeeded_after_retry_rate: Share | None = Field(default=None,
                                                     alias="succeededAfterRetryRate")
    by_failures: list[RetryStep] = Field(default_factory=list, alias="byFailures")


class PaymentSuccess(Pushed):
    """Success rate per checkout (of those reaching an outcome) and per payment attempt."""

    checkouts: Count = 0
    checkouts_with_outcome: Count = Field(default=0, alias="checkoutsWithOutcome")
    paid: Count = 0
    success_rate: Share | None = Field(default=None, alias="successRate")
    payment_attempts: Count = Field(default=0, alias="paymentAttempts")
    attempt_success_rate: Share | None = Field(default=None, alias="attemptSuccessRate")


class CustomEventFigures(Pushed):
    """One custom event name over the period: how many, from how many sessions."""

    name: str = ""
    events: Count = 0
    sessions: Count = 0


class ReportOut(Pushed):
    """Answer of ``GET /report``: every analysis over ``[since, until)``."""

    since: str = ""
    until: str = ""
    time_on_page: TimeOnPage = Field(default_factory=TimeOnPage, alias="timeOnPage")
    funnel: list[FunnelStep] = Field(default_factory=list)
    abandonment: list[AbandonmentPoint] = Field(default_factory=list)
    payment_errors: list[ErrorCodeFigures] = Field(default_factory=list, alias="paymentErrors")
    retries: Retries = Field(default_factory=Retries)
    payment_success: PaymentSuccess = Field(default_factory=PaymentSuccess,
                                            alias="paymentSuccess")
    custom_events: list[CustomEventFigures] = Field(
        default_factory=list, alias="customEvents",
        description="Custom events per name in the period, most first.")
