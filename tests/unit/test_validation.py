"""Validation errors as answers: field paths, readable messages, never the input echoed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from nilemetrics.protocol.bodies import BatchIn, CheckoutStartIn, PageVisitIn
from nilemetrics.server.validation import describe_errors, validation_error_handler

SID = "3f2b8c1e-7d4a-4c3b-9e1f-2a5b6c7d8e9f"
SECRET = "<script>card 4111111111111111</script>"


def errors_of(model: type[Any], data: Any) -> list[Any]:
    """pydantic's errors for ``data``, as the routes get them."""
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return caught.value.errors()


def test_missing_fields_are_named_with_field_required() -> None:
    """Each missing field is reported by its wire name with "field required"."""
    assert describe_errors(errors_of(PageVisitIn, {})) == [
        {"field": "sessionId", "message": "field required"},
        {"field": "pageType", "message": "field required"},
    ]


def test_a_batch_items_fields_are_named_with_their_index() -> None:
    """With the batch prefix, an item's field is events[2].sessionId."""
    errors = errors_of(PageVisitIn, {"pageType": "homepage"})
    assert describe_errors(errors, prefix="events[2]") == [
        {"field": "events[2].sessionId", "message": "field required"}
    ]


def test_nested_locations_become_dotted_paths_with_indexes() -> None:
    """FastAPI's ("body", "events", 2, "sessionId") reads events[2].sessionId."""
    errors = [
        {"type": "missing", "loc": ("body", "events", 2, "sessionId"), "msg": "Field required"},
        {"type": "int_type", "loc": ("query", "limit"), "msg": "Input should be a valid integer"},
        {"type": "x", "loc": ("body", "items", 0, 1, "sku"), "msg": "bad"},
    ]
    assert describe_errors(errors) == [
        {"field": "events[2].sessionId", "message": "field required"},
        {"field": "limit", "message": "Input should be a valid integer"},
        {"field": "items[0][1].sku", "message": "bad"},
    ]


def test_a_prefix_joins_an_index_or_an_empty_location() -> None:
    """A prefix before [0] has no dot; an error on the item itself names the item."""
    errors = [{"type": "x", "loc": (0, "sku"), "msg": "bad"}, {"type": "y", "loc": (), "msg": "m"}]
    assert describe_errors(errors, prefix="events[1]") == [
        {"field": "events[1][0].sku", "message": "bad"},
        {"field": "events[1]", "message": "m"},
    ]


def test_an_error_without_a_location_is_about_the_body() -> None:
    """No location (or only "body") names the body; a missing message says "invalid value"."""
    assert describe_errors([{"type": "missing", "loc": ("body",)}, {"loc": ()}]) == [
        {"field": "body", "message": "field required"},
        {"field": "body", "message": "invalid value"},
    ]


def test_value_errors_lose_pydantics_prefix() -> None:
    """Our own validators' messages read as written, without "Value error, "."""
    errors = errors_of(PageVisitIn, {"sessionId": "42", "pageType": "not a slug!"})
    assert describe_errors(errors) == [
        {"field": "sessionId",
         "message": "must be a UUID such as 3f2b8c1e-7d4a-4c3b-9e1f-2a5b6c7d8e9f"},
        {"field": "pageType",
         "message": "must be a slug of 1 to 64 letters, digits, _ or - (e.g. product_listing)"},
    ]


def test_a_category_visit_without_its_id_is_refused_by_name() -> None:
    """A category page visit must name its category."""
    errors = errors_of(PageVisitIn, {"sessionId": SID, "pageType": "category"})
    assert describe_errors(errors) == [
        {"field": "body", "message": "pageIdentifier is required for category pages"}
    ]


def test_no_message_echoes_the_input() -> None:
    """What the client sent (a card number, markup) never comes back in an error."""
    errors = errors_of(
        CheckoutStartIn,
        {"sessionId": SECRET, "checkoutItems": SECRET, "totalAmount": SECRET,
         "paymentMethod": SECRET * 10},
    )
    described = describe_errors(errors)
    assert [d["field"] for d in described] == [
        "sessionId", "checkoutItems", "totalAmount", "paymentMethod"
    ]
    assert "4111" not in json.dumps(described)


def test_a_batch_over_the_limit_is_named() -> None:
    """More than 500 events is reported on events with pydantic's size message."""
    errors = errors_of(BatchIn, {"events": [{}] * 501})
    assert describe_errors(errors) == [
        {"field": "events", "message": "List should have at most 500 items after validation, "
                                       "not 501"}
    ]


async def answer(errors: list[Any]) -> tuple[int, Any]:
    """The handler's status and JSON body for these request errors (no server needed)."""
    response = await validation_error_handler(None, RequestValidationError(errors))  # type: ignore[arg-type]
    return response.status_code, json.loads(response.body)


async def test_the_handler_answers_422_naming_the_first_problem_and_counting_the_rest() -> None:
    """detail names the first problem and how many more; errors lists them all."""
    status, body = await answer([
        {"type": "missing", "loc": ("body", "sessionId"), "msg": "Field required"},
        {"type": "missing", "loc": ("body", "pageType"), "msg": "Field required"},
    ])
    assert (status, body) == (422, {
        "detail": "sessionId: field required (and 1 more)",
        "errors": [{"field": "sessionId", "message": "field required"},
                   {"field": "pageType", "message": "field required"}],
    })


async def test_the_handler_asks_for_a_body_when_there_is_none() -> None:
    """A missing body reads "a JSON body is required"."""
    status, body = await answer([{"type": "missing", "loc": ("body",), "msg": "Field required"}])
    assert (status, body["detail"]) == (422, "body: a JSON body is required")


async def test_the_handler_answers_400_for_a_body_that_is_not_json() -> None:
    """Bytes that are not JSON are a 400 saying so, not a 422."""
    status, body = await answer([{"type": "json_invalid", "loc": ("body", 3), "msg": "bad"}])
    assert (status, body) == (400, {"detail": "request body is not valid JSON"})


async def test_the_handler_refuses_other_exceptions() -> None:
    """Registered for the wrong exception, it fails loudly instead of answering."""
    with pytest.raises(TypeError, match="got ValueError"):
        await validation_error_handler(None, ValueError("x"))  # type: ignore[arg-type]
