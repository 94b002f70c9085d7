"""The checkout state machine: what a checkout or payment event does to its checkout.

Pure: :func:`step` takes the session's latest checkout (or None) and the event,
and says which rows to write; ``apply`` runs the SQL. A session's checkout goes
``in_progress`` → ``payment_started`` → ``failed`` (any number of errors) →
``completed``; a new checkout start leaves an unfinished one ``abandoned``.

Real clients skip steps (a reload drops ``checkout-start``): a payment event for
a session without an open checkout creates the checkout from what the event
carries (amount, method, items or item count, flat or nested in the error's
details), so the error has its amount and the success that follows is counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from nilemetrics.protocol.bodies import (
    MAX_AMOUNT,
    MAX_CHECKOUT_ITEMS,
    MAX_ITEM_COUNT,
    CheckoutStartIn,
    PaymentContextIn,
    PaymentErrorIn,
)
from nilemetrics.protocol.names import CheckoutStatus, EventType

#: Payment methods that say nothing: a method named later replaces them.
_UNKNOWN_METHODS = frozenset({"", "unknown", "undefined", "null", "none"})
_CENT = Decimal("0.01")
#: The payment-method columns' size: a method read from free-form details is cut to it.
METHOD_LENGTH = 255


@dataclass(slots=True)
class Checkout:
    """A session's latest checkout as the batch knows it (``id`` None until inserted)."""

    id: int | None
    status: str
    total_amount: Decimal | None
    payment_method: str | None
    error_count: int
    item_count: int | None


@dataclass(slots=True)
class Carried:
    """What a checkout or payment event tells about its checkout."""

    amount: Decimal | None = None
    method: str | None = None
    items: list[Any] | None = None
    item_count: int | None = None


@dataclass(slots=True)
class Step:
    """The rows one event writes; ``checkout`` is the session's latest checkout afterwards."""

    checkout: Checkout | None
    #: A checkout left behind (its id): set to abandoned.
    abandon: int | None = None
    #: A new checkout row (the ``checkout``), without the session's contact fields.
    insert: dict[str, Any] | None = None
    #: Values to set on the ``checkout``'s row (after ``insert``, if both).
    update: dict[str, Any] = field(default_factory=dict)
    #: A payment error to record, with this attempt number.
    error_attempt: int | None = None


def method_unknown(method: str | None) -> bool:
    """Whether a payment method says nothing (absent, "unknown", "undefined", …)."""
    return method is None or method.strip().casefold() in _UNKNOWN_METHODS


def step(latest: Checkout | None, kind: EventType, body: BaseModel, at: datetime) -> Step:
    """What ``kind`` (a checkout or payment event with ``body``) does, given the latest checkout.

    Updates ``latest`` in place when the event changes it.
    """
    open_checkout = latest if latest and latest.status != CheckoutStatus.COMPLETED else None
    carried = carried_facts(body)

    if kind == EventType.CHECKOUT_START:
        # Starting over (a changed basket) leaves the unfinished checkout behind.
        new = _new(carried, CheckoutStatus.IN_PROGRESS, at)
        new.abandon = open_checkout.id if open_checkout is not None else None
        return new

    if kind == EventType.PAYMENT_START:
        if open_checkout is None:
            return _new(carried, CheckoutStatus.PAYMENT_STARTED, at, payment_started_at=at)
        values: dict[str, Any] = {
            "status": CheckoutStatus.PAYMENT_STARTED.value,
            "payment_started_at": at,
            "updated_at": at,
        }
        if carried.method is not None:
            # The method chosen at payment replaces the one guessed at checkout.
            values["payment_method"] = open_checkout.payment_method = carried.method
        _fill_missing(values, open_checkout, carried)
        open_checkout.status = CheckoutStatus.PAYMENT_STARTED.value
        return Step(open_checkout, update=values)

    if kind == EventType.PAYMENT_ERROR:
        result = (
            Step(open_checkout) if open_checkout is not None
            else _new(carried, CheckoutStatus.FAILED, at)
        )
        checkout = result.checkout
        if checkout is None:  # _new always makes one
            raise RuntimeError("payment error without a checkout")
        checkout.error_count += 1
        checkout.status = CheckoutStatus.FAILED.value
        values = {
            "status": CheckoutStatus.FAILED.value,
            "payment_error_at": at,
            "error_count": checkout.error_count,
            "updated_at": at,
        }
        named = body.payment_method if isinstance(body, PaymentContextIn) else None
        if carried.method is not None and carried.method == named:
            # Named by the event itself (not only deep in its details): it is what failed.
            values["payment_method"] = checkout.payment_method = carried.method
        _fill_missing(values, checkout, carried)
        result.update = values
        result.error_attempt = checkout.error_count
        return result

    if kind != EventType.PAYMENT_SUCCESS:
        raise ValueError(f"{kind} is not a checkout event")
    if open_checkout is None:
        if latest is not None:
            return Step(latest)  # the latest checkout is paid already: a repeated success
        return _new(carried, CheckoutStatus.COMPLETED, at, completed_at=at)
    values = {"status": CheckoutStatus.COMPLETED.value, "completed_at": at, "updated_at": at}
    _fill_missing(values, open_checkout, carried)
    open_checkout.status = CheckoutStatus.COMPLETED.value
    return Step(open_checkout, update=values)


def _new(carried: Carried, status: CheckoutStatus, at: datetime, **steps: Any) -> Step:
    checkout = Checkout(None, status.value, carried.amount, carried.method, 0, carried.item_count)
    row = {
        "checkout_items": carried.items,
        "item_count": carried.item_count,
        "total_amount": carried.amount,
        "payment_method": carried.method,
        "status": status.value,
        "error_count": 0,
        "started_at": at,
        "updated_at": at,
        **steps,
    }
    return Step(checkout, insert=row)


def _fill_missing(values: dict[str, Any], checkout: Checkout, carried: Carried) -> None:
    """Complete a checkout with what a payment event names and the checkout lacks."""
    if carried.method is not None and method_unknown(checkout.payment_method):
        values["payment_method"] = checkout.payment_method = carried.method
    if carried.amount is not None and checkout.total_amount is None:
        values["total_amount"] = checkout.total_amount = carried.amount
    if carried.item_count is not None and checkout.item_count is None:
        values["item_count"] = checkout.item_count = carried.item_count
        if carried.items is not None:
            values["checkout_items"] = carried.items


def _loose_amount(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        amount = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except ArithmeticError:
        return None
    if not amount.is_finite() or amount < 0 or amount > MAX_AMOUNT:
        return None
    return amount


def _loose_method(value: Any) -> str | None:
    if not isinstance(value, str) or method_unknown(value):
        return None
    return value.strip()[:METHOD_LENGTH] or None


def _loose_count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and 0 <= value <= MAX_ITEM_COUNT:
        return value
    return None


def carried_facts(body: BaseModel) -> Carried:
    """The checkout facts an event carries: its own fields, else its error's details.

    The shop's client puts them in the nested error's own ``errorDetails``
    (``{"totalAmount": 84.2, "paymentMethod": "ziina", "itemCount": 2}``); free-form
    details are read leniently, a value that does not fit is ignored.
    """
    if isinstance(body, CheckoutStartIn):
        return Carried(body.total_amount, body.payment_method, body.checkout_items,
                       len(body.checkout_items))
    if not isinstance(body, PaymentContextIn):
        return Carried()
    found = Carried(body.total_amount, body.payment_method, body.checkout_items,
                    body.item_count)
    if method_unknown(found.method):
        found.method = None
    if isinstance(body, PaymentErrorIn):
        places = [body.normalised().error_details, body.error_details]
        for details in (d for d in places if isinstance(d, dict)):
            if found.amount is None:
                found.amount = _loose_amount(details.get("totalAmount", details.get("amount")))
            if found.method is None:
                found.method = _loose_method(details.get("paymentMethod"))
            items = details.get("checkoutItems")
            if found.items is None and isinstance(items, list) and (
                len(items) <= MAX_CHECKOUT_ITEMS
            ):
                found.items = items
            if found.item_count is None:
                found.item_count = _loose_count(details.get("itemCount"))
    if found.item_count is None and found.items is not None:
        found.item_count = len(found.items)
    if found.amount is not None:
        found.amount = found.amount.quantize(_CENT)
    return found
