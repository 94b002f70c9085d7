"""Bodies of the ingestion API, with their limits: what a client may send.

Field names are camelCase as the shop's existing client sends them; unknown
fields are ignored, wrong types and oversize values are a 422 naming the field.
Every string is made storable by the text policy (``nilemetrics.protocol.text``).
"""

from __future__ import annotations

import math
import re
import uuid
from decimal import Decimal
from typing import Annotated, Any

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

from nilemetrics.protocol.names import (
    CLICK_EVENT,
    CLICK_GRID,
    EVENT_NAME_PATTERN,
    EXPERIMENT_EVENT,
    IDENTIFIED_PAGE_TYPES,
    PAGE_TYPE_PATTERN,
    Platform,
)
from nilemetrics.protocol.text import check_depth, clean_json, clean_text

MAX_URL = 2048
MAX_IDENTIFIER = 255
MAX_MESSAGE = 2048
MAX_CHECKOUT_ITEMS = 200
#: Most properties of one custom event.
MAX_EVENT_PROPERTIES = 20
#: Longest property name and longest string property value of a custom event.
MAX_PROPERTY_NAME = 64
MAX_PROPERTY_TEXT = 255
MAX_AMOUNT = Decimal("999999999999.99")
MAX_ITEM_COUNT = 100_000
#: Most events in one request to the batch endpoint.
MAX_BATCH_EVENTS = 500
#: Default cap of a request body, in bytes (the server's ``max_body_bytes`` setting).
MAX_BODY_BYTES = 64 * 1024


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
    # surrogates become U+FFFD, so both databases store the same text (protocol.text).
    # Per field, not per body: the fast path validates JSON bytes straight into the
    # model, and a body-level hook would make it build Python objects first.
    return clean_text(value) if isinstance(value, str) else value


#: Makes any text from the client storable (after the length check, which counts
#: what was sent).
Storable = BeforeValidator(_storable)
#: A JSON value of any shape from the client (basket items, error details): every
#: string in it made storable, at most 32 levels deep (see ``nilemetrics.protocol.text``).
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


class ClientBody(BaseModel):
    """A client body: unknown fields are ignored, fields filled by alias or by name."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


_PLATFORMS = {platform.value for platform in Platform}


def _platform(value: object) -> object:
    # Any other name an app sends (a new OS, "iPadOS") is counted as other, not refused.
    if isinstance(value, str):
        name = value.strip().lower()
        return name if name in _PLATFORMS else Platform.OTHER.value
    return value


class SessionStartIn(ClientBody):
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
    platform: Annotated[Platform, BeforeValidator(_platform)] | None = Field(
        default=None,
        description="Where the session runs: web, ios, android or other (any other name, in "
        "any case, is stored as other). Without it the session counts as web.",
    )
    app_version: Annotated[str, StringConstraints(max_length=64), Storable] | None = Field(
        default=None, alias="appVersion", description="The app's version, e.g. 4.2.1 (build 77)."
    )

    @field_validator("user_id", mode="before")
    @classmethod
    def _user_id_text(cls, value: object) -> object:
        # Shops often have numeric user ids; keep them as text.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value


class SessionEventIn(ClientBody):
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


class NestedErrorDetails(ClientBody):
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


def _event_name_slug(value: str) -> str:
    if not _PAGE_TYPE.match(value):
        raise ValueError("must be a slug of 1 to 64 letters, digits, _ or - (e.g. add_to_cart)")
    return value


def _property_value(value: object) -> object:
    # One clear message instead of one error per branch of a union.
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value
    if isinstance(value, str):
        if len(value) > MAX_PROPERTY_TEXT:
            raise ValueError(f"must be at most {MAX_PROPERTY_TEXT} characters")
        return clean_text(value)
    raise ValueError("must be a string, a number or true/false")


EventName = Annotated[
    str,
    AfterValidator(_event_name_slug),
    Field(
        description="Any slug (letters, digits, _ and -, up to 64). "
        f"'{EXPERIMENT_EVENT}' and '{CLICK_EVENT}' are reserved (see their properties).",
        examples=["add_to_cart", "newsletter_signup"],
        json_schema_extra={"pattern": EVENT_NAME_PATTERN},
    ),
]
PropertyName = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_PROPERTY_NAME), Storable
]
PropertyValue = Annotated[
    str | int | float | bool,
    BeforeValidator(_property_value),
    Field(description=f"A string (up to {MAX_PROPERTY_TEXT} characters), a number or a boolean."),
]


def _slug_property(properties: dict[str, Any], name: str, what: str) -> None:
    value = properties.get(name)
    if not isinstance(value, str) or not _PAGE_TYPE.match(value):
        raise ValueError(f"{what} needs {name}: a slug of 1 to 64 letters, digits, _ or -")


def _grid_property(properties: dict[str, Any], name: str) -> None:
    value = properties.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < CLICK_GRID:
        raise ValueError(f"a click needs {name}: a whole number from 0 to {CLICK_GRID - 1}")


class CustomEventIn(SessionEventIn):
    """Body of ``track/event``: something the shop wants counted, with a few properties.

    Two names are reserved, and their properties checked: ``experiment`` (an A/B
    assignment: ``experiment`` and ``variant``, slugs; optional ``visitor``, the
    visitor the assignment sticks to) and ``click`` (``path``, the element's CSS-like
    path; ``x`` and ``y``, its cell on a 10 x 10 grid over the viewport; ``page``).
    """

    name: EventName
    properties: dict[PropertyName, PropertyValue] = Field(
        default_factory=dict,
        validate_default=True,
        max_length=MAX_EVENT_PROPERTIES,
        description=f"Up to {MAX_EVENT_PROPERTIES} properties: name → string, number or boolean.",
    )

    @field_validator("properties")
    @classmethod
    def _reserved(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        name = info.data.get("name")
        if name == EXPERIMENT_EVENT:
            _slug_property(value, "experiment", "an experiment assignment")
            _slug_property(value, "variant", "an experiment assignment")
        elif name == CLICK_EVENT:
            path = value.get("path")
            if not isinstance(path, str) or not path:
                raise ValueError("a click needs path: the clicked element's path")
            _grid_property(value, "x")
            _grid_property(value, "y")
        return value


class BatchIn(ClientBody):
    """Body of ``events``: many events at once, applied in order in one commit.

    Each item is the body of a single-event route plus its ``type`` (an
    ``EventType``); the registry says which model validates which type.
    """

    events: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)
