"""Request and response models of the HTTP API: the OpenAPI document is the contract.

Field names are camelCase as the shop's existing client sends them; unknown
fields are ignored, wrong types and oversize values are a 422 naming the field.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from nilemetrics.protocol import IDENTIFIED_PAGE_TYPES, PAGE_TYPE_PATTERN
from nilemetrics.server.sanitize import check_depth, clean_json, clean_text

MAX_URL = 2048
MAX_IDENTIFIER = 255
MAX_MESSAGE = 2048
MAX_CHECKOUT_ITEMS = 200
MAX_AMOUNT = Decimal("999999999999.99")
MAX_ITEM_COUNT = 100_000


def _uuid_text(value: object) -> object:
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise ValueError(
                "must be a UUID such as 3f2b8c1e-7d4a-4c3b-9e1f-2a5b6c7d8e9f"
            ) from None
    return value


def _amount_value(value: object) -> object:
    # A JS float such as 59.970000000000006 is meant as 59.97: use its shortest
    # decimal text, never the binary expansion.
    if isinstance(value, bool):
        raise ValueError("must be a number")
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


Amount = Annotated[
    Decimal,
    Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False,
          description="Exact amount; stored rounded to two decimals."),
    BeforeValidator(_amount_value),
]
_PAGE_TYPE = re.compile(PAGE_TYPE_PATTERN)


def _page_type_slug(value: str) -> str:
    if not _PAGE_TYPE.match(value):
        raise ValueError("must be a slug of 1 to 64 letters, digits, _ or - (e.g. product_listing)")
    return value


PageTypeSlug = Annotated[
    str,
    AfterValidator(_page_type_slug),
    Field(
        description="Any slug (letters, digits, _ and -, up to 64). Known types: homepage, "
        "category, offer, product, search, checkout, payment, payment_error, other.",
        examples=["homepage", "category", "product_listing"],
        json_schema_extra={"pattern": PAGE_TYPE_PATTERN},
    ),
]


SessionId = Annotated[
    str,
    Field(
        description="The session's UUID, as returned by session/start or made by the client.",
        json_schema_extra={"format": "uuid"},
    ),
    BeforeValidator(_uuid_text),
]

def _storable(value: object) -> object:
    # One policy for every string coming in, nested JSON included: NUL and lone
    # surrogates become U+FFFD, so both databases store the same text (``sanitize``).
    # Per field, not per body: the fast path validates JSON bytes straight into the
    # model, and a body-level hook would make it build Python objects first.
    return clean_text(value) if isinstance(value, str) else value


#: Makes any text from the client storable (after the length check, which counts
#: what was sent).
Storable = BeforeValidator(_storable)
#: A JSON value of any shape from the client (basket items, error details): every
#: string in it made storable, at most 32 levels deep (see ``sanitize``).
JsonValue = Annotated[Any, BeforeValidator(clean_json), AfterValidator(check_depth)]
#: A basket: a list of JSON values, cleaned and depth-checked like ``JsonValue``.
JsonItems = Annotated[list[Any], BeforeValidator(clean_json), AfterValidator(check_depth)]
Identifier = Annotated[str, StringConstraints(max_length=MAX_IDENTIFIER), Storable]
Url = Annotated[str, StringConstraints(max_length=MAX_URL), Storable]
Message = Annotated[str, StringConstraints(max_length=MAX_MESSAGE), Storable]
EventId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64),
    Storable,
    Field(description="Client-chosen id; a repeat of a stored eventId changes nothing."),
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class SessionStartIn(_Body):
    """Body of ``session/start`` (may be empty): the logged-in customer, if any.

    ``sessionId`` is optional: without it the server makes one. With it (the tracker
    makes its own) an unknown id starts that session and a known one gets the contact
    fields sent, which is how a customer who logs in mid-session is identified.
    """

    session_id: SessionId | None = Field(default=None, alias="sessionId")
    user_id: Identifier | None = Field(default=None, alias="userId")
    email: Annotated[str, StringConstraints(max_length=320), Storable] | None = None
    phone: Annotated[str, StringConstraints(max_length=64), Storable] | None = None
    event_id: EventId | None = Field(default=None, alias="eventId")

    @field_validator("user_id", mode="before")
    @classmethod
    def _user_id_text(cls, value: object) -> object:
        # Shops often have numeric user ids; keep them as text.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value


class SessionEventIn(_Body):
    """A body naming only the session (heartbeat, payment start/success, end)."""

    session_id: SessionId = Field(alias="sessionId")
    event_id: EventId | None = Field(default=None, alias="eventId")


class PaymentContextIn(SessionEventIn):
    """What a payment event may carry about its checkout.

    A payment event for a session without an open checkout (the client dropped
    ``checkout-start``, say after a reload) creates the checkout from these.
    """

    payment_method: Identifier | None = Field(default=None, alias="paymentMethod")
    total_amount: Amount | None = Field(default=None, alias="totalAmount")
    checkout_items: JsonItems | None = Field(
        default=None, alias="checkoutItems", max_length=MAX_CHECKOUT_ITEMS
    )
    item_count: Annotated[int, Field(ge=0, le=MAX_ITEM_COUNT)] | None = Field(
        default=None, alias="itemCount"
    )


class PaymentStartIn(PaymentContextIn):
    """Body of ``track/payment-start``."""


class PaymentSuccessIn(PaymentContextIn):
    """Body of ``track/payment-success``."""


class PageVisitIn(SessionEventIn):
    """Body of ``track/page-visit``."""

    page_type: PageTypeSlug = Field(alias="pageType")
    page_identifier: Identifier | None = Field(default=None, alias="pageIdentifier")
    page_url: Url | None = Field(default=None, alias="pageUrl")

    @field_validator("page_identifier", mode="before")
    @classmethod
    def _identifier_text(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value

    @model_validator(mode="after")
    def _identified(self) -> PageVisitIn:
        if self.page_type in IDENTIFIED_PAGE_TYPES and not self.page_identifier:
            raise ValueError(f"pageIdentifier is required for {self.page_type} pages")
        return self


class CheckoutStartIn(SessionEventIn):
    """Body of ``track/checkout-start``."""

    checkout_items: JsonItems = Field(alias="checkoutItems", max_length=MAX_CHECKOUT_ITEMS)
    total_amount: Amount = Field(alias="totalAmount")
    payment_method: Identifier | None = Field(default=None, alias="paymentMethod")


class NestedErrorDetails(_Body):
    """The ``errorDetails`` object the existing client sends."""

    error_code: Identifier | None = Field(default=None, alias="errorCode")
    error_message: Message | None = Field(default=None, alias="errorMessage")
    error_details: JsonValue = Field(default=None, alias="errorDetails")
    timestamp: Annotated[str, StringConstraints(max_length=64), Storable] | None = None
    user_agent: Annotated[str, StringConstraints(max_length=1024), Storable] | None = Field(
        default=None, alias="userAgent"
    )
    url: Url | None = None


_NESTED_KEYS = {"errorCode", "errorMessage", "errorDetails", "timestamp", "userAgent", "url"}


class PaymentErrorIn(PaymentContextIn):
    """Body of ``track/payment-error``: flat, or nested inside ``errorDetails``."""

    error_code: Identifier | None = Field(default=None, alias="errorCode")
    error_message: Message | None = Field(default=None, alias="errorMessage")
    error_details: JsonValue = Field(default=None, alias="errorDetails")

    def normalised(self) -> NestedErrorDetails:
        """The error in the nested form, whichever form was sent."""
        details = self.error_details
        if (
            self.error_code is None
            and self.error_message is None
            and isinstance(details, dict)
            and details.keys() & _NESTED_KEYS
        ):
            return NestedErrorDetails.model_validate(details)
        return NestedErrorDetails(
            errorCode=self.error_code, errorMessage=self.error_message, errorDetails=details
        )

    @field_validator("error_details")
    @classmethod
    def _nested_valid(cls, value: Any, info: ValidationInfo) -> Any:
        # A malformed nested form is a 422 now, not a surprise at write time.
        flat = (
            info.data.get("error_code") is not None
            or info.data.get("error_message") is not None
        )
        if not flat and isinstance(value, dict) and value.keys() & _NESTED_KEYS:
            try:
                NestedErrorDetails.model_validate(value)
            except ValidationError as exc:
                raise ValueError(
                    "; ".join(
                        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
                    )
                ) from None
        return value


class BatchIn(_Body):
    """Body of ``events``: many events at once, applied in order in one commit."""

    events: list[dict[str, Any]] = Field(min_length=1, max_length=500)


class SessionStartOut(BaseModel):
    """Answer of ``session/start``."""

    session_id: str = Field(alias="sessionId", json_schema_extra={"format": "uuid"})


class SubjectIn(_Body):
    """Body of ``DELETE subjects``: the person to erase (any of the four, at least one)."""

    # Made storable like the text that was stored, so that the same person matches.
    email: Annotated[str, StringConstraints(max_length=320), Storable] | None = None
    phone: Annotated[str, StringConstraints(max_length=64), Storable] | None = None
    user_id: Identifier | None = Field(default=None, alias="userId")
    session_id: Annotated[str, StringConstraints(max_length=36)] | None = Field(
        default=None, alias="sessionId"
    )


class ErasureOut(BaseModel):
    """Answer of ``DELETE subjects``: rows deleted and scrubbed per table."""

    success: Literal[True] = True
    deleted: dict[str, int]
    scrubbed: dict[str, int]
    sessions: int = Field(description="How many sessions were the person's.")
    subject_hash: str = Field(
        alias="subjectHash", description="Keyed hash the erasure was audited under."
    )
    wal_checkpointed: bool = Field(alias="walCheckpointed")


class ProblemOut(BaseModel):
    """An error answer: what went wrong, in one line."""

    detail: str


class FieldProblemOut(BaseModel):
    """One field's problem in a 422 answer."""

    field: str = Field(description='Where, e.g. "pageType" or "events[2].sessionId".')
    message: str


class ValidationProblemOut(BaseModel):
    """A 422 answer: the first problem in one line, and every problem per field.

    ``errors`` is absent when the problem is not one field's (an erasure request
    naming nobody, an event the database refused).
    """

    detail: str = Field(description='"field: message", e.g. "sessionId: field required".')
    errors: list[FieldProblemOut] = Field(default_factory=list)


_PROBLEMS: dict[int, dict[str, Any]] = {
    400: {"model": ProblemOut, "description": "The body is not JSON."},
    401: {"model": ProblemOut, "description": "Missing or invalid bearer token."},
    404: {"model": ProblemOut, "description": "No such thing."},
    413: {"model": ProblemOut, "description": "The body is over the size limit (64 KiB)."},
    422: {"model": ValidationProblemOut, "description": "A field is missing or wrong."},
    503: {
        "model": ProblemOut,
        "description": "The database is unavailable; nothing was stored (see Retry-After).",
    },
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route that may answer these error statuses."""
    return {code: _PROBLEMS[code] for code in codes}


class SuccessOut(BaseModel):
    """Answer of every tracking call."""

    success: Literal[True] = True


class BatchOut(BaseModel):
    """Answer of the batch endpoint."""

    success: Literal[True] = True
    accepted: int
    duplicates: int


class CleanupOut(BaseModel):
    """Answer of ``cleanup-sessions``."""

    success: Literal[True] = True
    ended: int


class PaymentErrorRow(BaseModel):
    """One payment error with its checkout context (snake_case, as the old API)."""

    id: int
    session_id: str
    attempt: int
    email: str | None
    phone: str | None
    checkout_items: list[Any] | None
    item_count: int | None = Field(
        description="Items in the checkout (the length of checkout_items when it was sent)."
    )
    total_amount: float | None = Field(
        description="Amount rounded to cents, as a JSON number (stored exactly)."
    )
    payment_method: str | None
    payment_error_at: datetime
    error_code: str | None
    error_message: str | None
    error_details: dict[str, Any] | None
    ip_address: str | None
    user_agent: str | None
    checkout_status: str | None


class FiringAlertOut(BaseModel):
    """An alert rule firing now (``serve --alerts``)."""

    model_config = ConfigDict(populate_by_name=True)

    rule: str
    metric: str
    value: float | None = Field(description="The metric at the rule's last evaluation.")
    threshold: float
    direction: Literal["above", "below"]
    window_seconds: float | None = Field(
        alias="windowSeconds", description="The rule's window; null for live_sessions (now)."
    )
    since: datetime = Field(description="When the rule started firing.")


class LiveMetricsOut(BaseModel):
    """Live numbers: sessions per page now, and the last hour's payment figures."""

    model_config = ConfigDict(populate_by_name=True)

    homepage: int
    categories: dict[str, int]
    offers: dict[str, int]
    product: int
    search: int
    checkout: int
    payment: int
    payment_error: int = Field(alias="paymentError")
    other: int
    pages: dict[str, int] = Field(
        description="Live sessions per page type, for every page type (known or not); "
        "the values add up to liveSessions."
    )
    live_sessions: int = Field(alias="liveSessions")
    checkouts_last_hour: int = Field(alias="checkoutsLastHour")
    payment_errors_last_hour: int = Field(alias="paymentErrorsLastHour")
    payment_successes_last_hour: int = Field(alias="paymentSuccessesLastHour")
    payment_failures_last_hour: int = Field(alias="paymentFailuresLastHour")
    payment_success_rate: float | None = Field(alias="paymentSuccessRate")
    sessions_last_hour: int = Field(
        alias="sessionsLastHour",
        description="Funnel step 1: sessions that reported a page and were active in the "
        "last hour.",
    )
    checkout_sessions_last_hour: int = Field(
        alias="checkoutSessionsLastHour",
        description="Funnel step 2: of those, sessions that started a checkout in the last hour.",
    )
    payment_sessions_last_hour: int = Field(
        alias="paymentSessionsLastHour",
        description="Funnel step 3: of those, sessions whose checkout reached payment "
        "(a payment start, error or success).",
    )
    paid_sessions_last_hour: int = Field(
        alias="paidSessionsLastHour",
        description="Funnel step 4: of those, sessions whose checkout was paid.",
    )
    live_window_seconds: float = Field(alias="liveWindowSeconds")
    alerts: list[FiringAlertOut] = Field(
        default_factory=list,
        description="Alert rules firing now, longest first (empty without serve --alerts).",
    )
    last_updated: datetime = Field(alias="lastUpdated")


class PageSessionOut(BaseModel):
    """One live session on a page: where it is, since when, who, and where it came from."""

    model_config = ConfigDict(populate_by_name=True)

    session_id: str = Field(alias="sessionId")
    page_type: str = Field(alias="pageType")
    page_identifier: str | None = Field(alias="pageIdentifier")
    page_url: str | None = Field(alias="pageUrl")
    entered_at: datetime | None = Field(
        alias="enteredAt",
        description="When the session entered the page (its open page visit); null when it "
        "got there without a page visit (a checkout or payment event).",
    )
    seconds_on_page: float | None = Field(alias="secondsOnPage")
    last_activity: datetime = Field(alias="lastActivity")
    email: str | None = Field(description="Only when the shop sent it for a logged-in customer.")
    previous_page_type: str | None = Field(
        alias="previousPageType", description="The page visited before this one, if any."
    )
    previous_page_identifier: str | None = Field(alias="previousPageIdentifier")


class PageSessionsOut(BaseModel):
    """The live sessions on some pages, longest on the page first."""

    total: int = Field(description="Live sessions on those pages (all of them, not only listed).")
    sessions: list[PageSessionOut]
