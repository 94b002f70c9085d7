"""The checkout state machine: what each checkout or payment event writes (pure, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from nilemetrics.protocol.names import EventType
from nilemetrics.protocol.registry import EVENTS
from nilemetrics.server.ingestion.checkout import (
    Carried,
    Checkout,
    Step,
    carried_facts,
    method_unknown,
    step,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SID = "3f2b8c1e-7d4a-4c3b-9e1f-2a5b6c7d8e9f"
BASKET = [{"sku": "tea", "qty": 1, "price": 19.99}, {"sku": "cup", "qty": 2, "price": 19.99}]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def body(kind: EventType, **fields: Any) -> BaseModel:
    """The validated body of ``kind`` as the HTTP side parses it."""
    return EVENTS[kind].body.model_validate({"sessionId": SID, **fields})


def shop_error(**extra: Any) -> BaseModel:
    """A payment error exactly as the shop's real client sends it (nested form)."""
    return body(
        EventType.PAYMENT_ERROR,
        errorDetails={
            "errorCode": "card_declined",
            "errorMessage": "Your card was declined",
            "errorDetails": {"totalAmount": 84.2, "paymentMethod": "ziina", "itemCount": 2},
            "timestamp": "2025-03-01T12:00:00.000Z",
            "userAgent": "Mozilla/5.0",
            "url": "https://shop.example/pay",
        },
        **extra,
    )


def test_the_whole_life_cycle_of_a_checkout() -> None:
    """start → payment start → error → error → success, with every row each step writes."""
    started = step(None, EventType.CHECKOUT_START,
                   body(EventType.CHECKOUT_START, checkoutItems=BASKET, totalAmount=59.97), at(0))
    assert started == Step(
        checkout=Checkout(None, "in_progress", Decimal("59.97"), None, 0, 2),
        insert={
            "checkout_items": BASKET, "item_count": 2, "total_amount": Decimal("59.97"),
            "payment_method": None, "status": "in_progress", "error_count": 0,
            "started_at": at(0), "updated_at": at(0),
        },
    )
    checkout = started.checkout
    assert checkout is not None
    checkout.id = 7  # as apply sets it after the insert

    paying = step(checkout, EventType.PAYMENT_START,
                  body(EventType.PAYMENT_START, paymentMethod="card"), at(10))
    assert paying == Step(
        checkout=checkout,
        update={"status": "payment_started", "payment_started_at": at(10),
                "updated_at": at(10), "payment_method": "card"},
    )
    assert (checkout.status, checkout.payment_method) == ("payment_started", "card")

    first = step(checkout, EventType.PAYMENT_ERROR,
                 body(EventType.PAYMENT_ERROR, errorCode="declined"), at(20))
    assert first == Step(
        checkout=checkout,
        update={"status": "failed", "payment_error_at": at(20), "error_count": 1,
                "updated_at": at(20)},
        error_attempt=1,
    )
    second = step(checkout, EventType.PAYMENT_ERROR,
                  body(EventType.PAYMENT_ERROR, errorCode="declined"), at(30))
    assert (second.error_attempt, second.update["error_count"], second.insert) == (2, 2, None)
    assert (checkout.status, checkout.error_count) == ("failed", 2)

    paid = step(checkout, EventType.PAYMENT_SUCCESS, body(EventType.PAYMENT_SUCCESS), at(40))
    assert paid == Step(
        checkout=checkout,
        update={"status": "completed", "completed_at": at(40), "updated_at": at(40)},
    )
    assert checkout.status == "completed"


def test_a_second_checkout_start_abandons_the_unfinished_one() -> None:
    """Starting over leaves the open checkout abandoned and inserts a new one."""
    open_one = Checkout(7, "failed", Decimal("10.00"), "card", 1, 1)
    again = step(open_one, EventType.CHECKOUT_START,
                 body(EventType.CHECKOUT_START, checkoutItems=BASKET[:1], totalAmount="19.99"),
                 at(0))
    assert again.abandon == 7
    assert again.checkout == Checkout(None, "in_progress", Decimal("19.99"), None, 0, 1)
    assert again.insert is not None and again.insert["status"] == "in_progress"


def test_a_checkout_start_after_a_paid_one_abandons_nothing() -> None:
    """A new basket after a completed checkout is simply a new checkout."""
    paid = Checkout(7, "completed", Decimal("10.00"), "card", 0, 1)
    new = step(paid, EventType.CHECKOUT_START,
               body(EventType.CHECKOUT_START, checkoutItems=[], totalAmount=0), at(0))
    assert (new.abandon, new.checkout is not paid, paid.status) == (None, True, "completed")


def test_a_payment_error_without_a_checkout_creates_it_from_the_shop_client_details() -> None:
    """The shop's nested error (84.2, ziina, 2 items) creates a failed checkout with them."""
    result = step(None, EventType.PAYMENT_ERROR, shop_error(), at(0))
    assert result.insert == {
        "checkout_items": None, "item_count": 2, "total_amount": Decimal("84.20"),
        "payment_method": "ziina", "status": "failed", "error_count": 0,
        "started_at": at(0), "updated_at": at(0),
    }
    assert result.update == {"status": "failed", "payment_error_at": at(0), "error_count": 1,
                             "updated_at": at(0)}
    assert result.checkout == Checkout(None, "failed", Decimal("84.20"), "ziina", 1, 2)
    assert (result.error_attempt, result.abandon) == (1, None)


def test_carried_facts_read_the_shop_clients_nested_error_details() -> None:
    """Amount, method and item count come from errorDetails.errorDetails, amount in cents."""
    assert carried_facts(shop_error()) == Carried(Decimal("84.20"), "ziina", None, 2)


def test_a_payment_success_without_a_checkout_creates_a_completed_one() -> None:
    """A success after a reload (no checkout-start) still counts, with what it carries."""
    result = step(None, EventType.PAYMENT_SUCCESS,
                  body(EventType.PAYMENT_SUCCESS, paymentMethod="ziina", totalAmount=84.2,
                       itemCount=2),
                  at(0))
    assert result.insert == {
        "checkout_items": None, "item_count": 2, "total_amount": Decimal("84.20"),
        "payment_method": "ziina", "status": "completed", "error_count": 0,
        "started_at": at(0), "updated_at": at(0), "completed_at": at(0),
    }
    assert result.checkout == Checkout(None, "completed", Decimal("84.20"), "ziina", 0, 2)
    assert (result.update, result.error_attempt) == ({}, None)


def test_a_payment_start_without_a_checkout_creates_one_at_payment() -> None:
    """payment-start with no open checkout inserts one already at payment_started."""
    result = step(None, EventType.PAYMENT_START,
                  body(EventType.PAYMENT_START, checkoutItems=BASKET, totalAmount=39.98), at(0))
    assert result.insert is not None
    assert (result.insert["status"], result.insert["payment_started_at"],
            result.insert["item_count"], result.insert["checkout_items"]) == (
        "payment_started", at(0), 2, BASKET
    )


def test_a_repeated_success_changes_nothing() -> None:
    """A second payment-success for a paid checkout writes no row at all."""
    paid = Checkout(7, "completed", Decimal("84.20"), "ziina", 1, 2)
    again = step(paid, EventType.PAYMENT_SUCCESS,
                 body(EventType.PAYMENT_SUCCESS, totalAmount=1), at(50))
    assert again == Step(checkout=paid)
    assert paid == Checkout(7, "completed", Decimal("84.20"), "ziina", 1, 2)


def test_an_error_after_a_paid_checkout_starts_a_new_failed_one() -> None:
    """A completed checkout is closed: a later payment error is a new checkout's first attempt."""
    paid = Checkout(7, "completed", Decimal("84.20"), "ziina", 0, 2)
    result = step(paid, EventType.PAYMENT_ERROR, shop_error(), at(0))
    assert result.insert is not None and result.checkout is not paid
    assert (result.error_attempt, result.abandon) == (1, None)


def test_an_unknown_method_is_replaced_by_a_named_one() -> None:
    """A checkout started with "unknown" takes the method named at payment start."""
    checkout = Checkout(3, "in_progress", Decimal("84.20"), "unknown", 0, 2)
    result = step(checkout, EventType.PAYMENT_START,
                  body(EventType.PAYMENT_START, paymentMethod="ziina"), at(0))
    assert result.update["payment_method"] == "ziina"
    assert checkout.payment_method == "ziina"


def test_an_unknown_method_is_filled_from_an_errors_details() -> None:
    """A method found only deep in an error's details replaces an unknown one."""
    checkout = Checkout(3, "payment_started", Decimal("84.20"), "undefined", 0, 2)
    result = step(checkout, EventType.PAYMENT_ERROR, shop_error(), at(0))
    assert (result.update["payment_method"], checkout.payment_method) == ("ziina", "ziina")


def test_a_named_method_is_not_replaced_by_one_deep_in_the_details() -> None:
    """A known method stays when an error names another only inside its details."""
    checkout = Checkout(3, "payment_started", Decimal("84.20"), "card", 0, 2)
    result = step(checkout, EventType.PAYMENT_ERROR, shop_error(), at(0))
    assert "payment_method" not in result.update
    assert checkout.payment_method == "card"


def test_the_method_an_error_names_itself_is_what_failed() -> None:
    """paymentMethod on the error itself replaces the checkout's method."""
    checkout = Checkout(3, "payment_started", Decimal("84.20"), "card", 0, 2)
    result = step(checkout, EventType.PAYMENT_ERROR,
                  body(EventType.PAYMENT_ERROR, errorCode="x", paymentMethod="apple_pay"), at(0))
    assert (result.update["payment_method"], checkout.payment_method) == ("apple_pay", "apple_pay")


def test_an_unknown_method_sent_later_replaces_nothing() -> None:
    """payment-start with paymentMethod "unknown" keeps the checkout's named method."""
    checkout = Checkout(3, "in_progress", Decimal("84.20"), "card", 0, 2)
    result = step(checkout, EventType.PAYMENT_START,
                  body(EventType.PAYMENT_START, paymentMethod="unknown"), at(0))
    assert "payment_method" not in result.update
    assert checkout.payment_method == "card"


def test_a_payment_event_fills_what_the_checkout_lacks_only() -> None:
    """Amount and item count are filled when missing, never overwritten."""
    lacking = Checkout(3, "in_progress", None, None, 0, None)
    filled = step(lacking, EventType.PAYMENT_SUCCESS,
                  body(EventType.PAYMENT_SUCCESS, totalAmount=12.5, checkoutItems=BASKET), at(0))
    assert filled.update == {
        "status": "completed", "completed_at": at(0), "updated_at": at(0),
        "total_amount": Decimal("12.50"), "item_count": 2, "checkout_items": BASKET,
    }
    complete = Checkout(4, "in_progress", Decimal("59.97"), "card", 0, 2)
    kept = step(complete, EventType.PAYMENT_SUCCESS,
                body(EventType.PAYMENT_SUCCESS, totalAmount=1, itemCount=9), at(0))
    assert kept.update == {"status": "completed", "completed_at": at(0), "updated_at": at(0)}
    assert (complete.total_amount, complete.item_count) == (Decimal("59.97"), 2)


def test_attempt_numbers_continue_from_the_stored_error_count() -> None:
    """A checkout loaded with 3 errors records the next one as attempt 4."""
    checkout = Checkout(9, "failed", Decimal("5.00"), "card", 3, 1)
    result = step(checkout, EventType.PAYMENT_ERROR,
                  body(EventType.PAYMENT_ERROR, errorMessage="timeout"), at(0))
    assert (result.error_attempt, result.update["error_count"], checkout.error_count) == (4, 4, 4)


def test_a_non_checkout_event_is_refused() -> None:
    """step() is only for checkout and payment events."""
    with pytest.raises(ValueError, match="page-visit is not a checkout event"):
        step(None, EventType.PAGE_VISIT, body(EventType.PAGE_VISIT, pageType="homepage"), at(0))


def test_carried_facts_read_flat_details_leniently() -> None:
    """A flat error's details give the amount (also as text or "amount") and the items."""
    flat = body(EventType.PAYMENT_ERROR, errorCode="declined",
                errorDetails={"amount": " 12.5 ", "checkoutItems": BASKET})
    assert carried_facts(flat) == Carried(Decimal("12.50"), None, BASKET, 2)


@pytest.mark.parametrize(
    "details",
    [
        {"totalAmount": -1, "paymentMethod": "null", "itemCount": -2},
        {"totalAmount": "lots", "paymentMethod": 5, "itemCount": 2.5},
        {"totalAmount": True, "paymentMethod": "  ", "itemCount": True},
        {"totalAmount": "1e20", "paymentMethod": None, "itemCount": 10**9},
        {"totalAmount": "NaN", "paymentMethod": ["ziina"], "itemCount": "2"},
    ],
)
def test_carried_facts_ignore_values_that_do_not_fit(details: dict[str, Any]) -> None:
    """Negative, non-numeric, boolean, oversize or unknown values in details are ignored."""
    error = body(EventType.PAYMENT_ERROR, errorCode="x", errorDetails=details)
    assert carried_facts(error) == Carried()


def test_carried_facts_prefer_the_events_own_fields() -> None:
    """An error's own totalAmount and paymentMethod win over its details."""
    error = shop_error(totalAmount=10, paymentMethod="card", itemCount=5)
    assert carried_facts(error) == Carried(Decimal("10.00"), "card", None, 5)


def test_carried_facts_of_an_event_without_checkout_fields_are_empty() -> None:
    """A body that carries nothing about a checkout gives no facts."""
    assert carried_facts(body(EventType.SESSION_HEARTBEAT)) == Carried()


@pytest.mark.parametrize("method", [None, "", "unknown", " Unknown ", "UNDEFINED", "null",
                                    "none"])
def test_methods_that_say_nothing_are_unknown(method: str | None) -> None:
    """Absent, empty and placeholder methods count as unknown, whatever their case."""
    assert method_unknown(method) is True


def test_a_real_method_is_known() -> None:
    """A named method is not unknown."""
    assert method_unknown("ziina") is False
