"""Text that SQLite and PostgreSQL store differently is stored alike, or refused alike.

One policy for all text coming in: lone surrogates and NUL characters, which
cannot be stored as UTF-8 text in PostgreSQL, become U+FFFD; JSON nested over
32 levels deep is a 422 naming the field; every length the API accepts fits
its column on both databases.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from nilemetrics.protocol.bodies import (
    CheckoutStartIn,
    NestedErrorDetails,
    PageVisitIn,
    PaymentErrorIn,
    PaymentStartIn,
    SessionStartIn,
)
from nilemetrics.server.tables import (
    checkouts_t,
    errors_t,
    events_t,
    sessions_t,
    visits_t,
)
from tests.api.conftest import row_counts, rows
from tests.api.journeys import P, post, start
from tests.support import LiveServer

#: JSON text with a lone (high) surrogate, as a browser's JSON.stringify sends it.
LONE = '"\\ud800z"'
REPLACED = "\ufffdz"


#: Placeholder for ``LONE`` in bodies built with json.dumps.
X = "@lone@"


def with_lone(text: str) -> str:
    """JSON text with every ``X`` string turned into ``LONE``."""
    return text.replace(json.dumps(X), LONE)


def raw_post(client: httpx.Client, path: str, text: str) -> httpx.Response:
    """POST JSON text as given (lone surrogates cannot be made by json.dumps of str)."""
    return client.post(f"{P}/{path}", content=text.encode(),
                       headers={"Content-Type": "application/json"})


def nested(depth: int) -> Any:
    """A JSON value nested ``depth`` levels deep (lists and objects alternating)."""
    value: Any = "leaf"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def test_lone_surrogate_in_error_details_is_replaced_and_readable(
    client: httpx.Client, db: Engine, server: LiveServer
) -> None:
    """A lone surrogate in nested errorDetails is stored as U+FFFD; payment-errors answers 200."""
    sid = start(client)
    body = with_lone(json.dumps({"sessionId": sid, "errorDetails": {
        "errorCode": "card_declined", "errorMessage": X, "errorDetails": {X: [X]}, "url": X,
        "userAgent": "\ud83d\ude00"}}))
    response = raw_post(client, "track/payment-error", body)
    assert response.status_code == 200, response.text
    listed = client.get(f"{P}/payment-errors", headers=server.auth)
    assert listed.status_code == 200, listed.text
    [row] = listed.json()
    assert row["error_message"] == REPLACED
    assert row["error_details"]["errorMessage"] == REPLACED
    assert row["error_details"]["errorDetails"] == {REPLACED: [REPLACED]}
    assert row["error_details"]["url"] == REPLACED
    # A surrogate pair is a real character (an emoji), not damage.
    assert row["error_details"]["userAgent"] == "\U0001f600"
    [stored] = rows(db, errors_t)
    assert stored.page_url == REPLACED


def test_lone_surrogates_everywhere_in_a_batch_are_replaced(
    client: httpx.Client, db: Engine
) -> None:
    """Every string of every event (ids, URLs, basket keys and values) gets the same policy."""
    sid = str(uuid.uuid4())
    body = with_lone(json.dumps({"events": [
        {"type": "session-start", "sessionId": sid, "email": X, "phone": X, "userId": X},
        {"type": "page-visit", "sessionId": sid, "pageType": "offer", "pageIdentifier": X,
         "pageUrl": X},
        {"type": "checkout-start", "sessionId": sid, "totalAmount": 1, "paymentMethod": X,
         "checkoutItems": [{X: X}]},
    ]}))
    response = raw_post(client, "events", body)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "accepted": 3, "duplicates": 0}
    [session] = rows(db, sessions_t)
    assert (session.email, session.phone, session.user_id) == (REPLACED,) * 3
    assert session.current_page_identifier == REPLACED
    [visit] = rows(db, visits_t)
    assert (visit.page_identifier, visit.page_url) == (REPLACED, REPLACED)
    [checkout] = rows(db, checkouts_t)
    assert checkout.payment_method == REPLACED
    assert checkout.checkout_items == [{REPLACED: REPLACED}]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_already_stored_lone_surrogates_are_read_as_replacement(
    client: httpx.Client, db: Engine, server: LiveServer
) -> None:
    """Bad text stored before the fix (SQLite JSON keeps it escaped) reads as U+FFFD, no 500."""
    sid = start(client)
    post(client, "track/checkout-start", {"sessionId": sid, "checkoutItems": [{"a": 1}],
                                          "totalAmount": 5})
    post(client, "track/payment-error", {"sessionId": sid, "errorCode": "x"})
    with db.begin() as conn:
        # What an older server stored: JSON text with the escape, as json.dumps writes it.
        conn.exec_driver_sql(
            "UPDATE payment_errors SET error_details = ?", ('{"m": "\\ud800z"}',)
        )
        conn.exec_driver_sql(
            "UPDATE checkout_sessions SET checkout_items = ?", ('["\\udfff"]',)
        )
    listed = client.get(f"{P}/payment-errors", headers=server.auth)
    assert listed.status_code == 200, listed.text
    [row] = listed.json()
    assert row["error_details"] == {"m": REPLACED}
    assert row["checkout_items"] == ["\ufffd"]


def test_nul_characters_are_replaced_and_stored_on_both_databases(
    client: httpx.Client, db: Engine, server: LiveServer
) -> None:
    """NUL in plain fields and nested JSON is stored as U+FFFD on SQLite and PostgreSQL."""
    sid = start(client, email="a\u0000@example.com")
    post(client, "track/page-visit", {"sessionId": sid, "pageType": "homepage",
                                      "pageUrl": "https://s.test/\u0000"})
    post(client, "track/checkout-start", {
        "sessionId": sid, "totalAmount": 3, "paymentMethod": "ca\u0000rd",
        "checkoutItems": [{"name\u0000": "tv\u0000", "tags": ["\u0000"]}]})
    post(client, "track/payment-error", {"sessionId": sid, "errorDetails": {
        "errorCode": "c\u0000", "errorMessage": "m\u0000",
        "errorDetails": {"k": "v\u0000"}}})
    [session] = rows(db, sessions_t)
    assert session.email == "a\ufffd@example.com"
    [visit] = rows(db, visits_t)
    assert visit.page_url == "https://s.test/\ufffd"
    [checkout] = rows(db, checkouts_t)
    assert checkout.payment_method == "ca\ufffdrd"
    assert checkout.checkout_items == [{"name\ufffd": "tv\ufffd", "tags": ["\ufffd"]}]
    [error] = rows(db, errors_t)
    assert (error.error_code, error.error_message) == ("c\ufffd", "m\ufffd")
    assert error.error_details["errorDetails"] == {"k": "v\ufffd"}
    listed = client.get(f"{P}/payment-errors", headers=server.auth)
    assert listed.status_code == 200


@pytest.mark.parametrize(
    ("path", "field", "body"),
    [
        ("track/checkout-start", "checkoutItems",
         {"checkoutItems": [nested(600)], "totalAmount": 1}),
        ("track/payment-error", "errorDetails", {"errorDetails": nested(900)}),
        ("track/payment-error", "errorDetails",
         {"errorDetails": {"errorCode": "x", "errorDetails": nested(40)}}),
        ("track/payment-error", "errorDetails", {"errorCode": "x", "errorDetails": nested(33)}),
    ],
    ids=["checkoutItems 600", "errorDetails 900", "nested errorDetails 40", "flat 33"],
)
def test_over_deep_json_is_422_naming_the_field(
    client: httpx.Client, db: Engine, path: str, field: str, body: dict[str, Any]
) -> None:
    """JSON nested over 32 levels is refused at validation (never a 503 loop), nothing stored."""
    sid = str(uuid.uuid4())
    response = client.post(f"{P}/{path}", json={"sessionId": sid, **body})
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == f"{field}: JSON nested deeper than 32 levels"
    assert all(n == 0 for n in row_counts(db).values())
    # The same in a batch: refused with its index named, the server still healthy.
    response = client.post(f"{P}/events", json={"events": [
        {"type": path.rsplit("/", 1)[1], "sessionId": sid, **body}]})
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == f"events[0].{field}: JSON nested deeper than 32 levels"
    assert all(n == 0 for n in row_counts(db).values())
    post(client, "track/payment-start", {"sessionId": sid})


def test_json_32_levels_deep_is_accepted(client: httpx.Client, db: Engine) -> None:
    """Exactly 32 levels (the basket list counts as one) is still stored."""
    sid = start(client)
    items = [nested(31)]
    post(client, "track/checkout-start", {"sessionId": sid, "checkoutItems": items,
                                          "totalAmount": 1})
    [checkout] = rows(db, checkouts_t)
    assert checkout.checkout_items == items


def test_json_too_deep_to_parse_is_400(client: httpx.Client, db: Engine) -> None:
    """A body nested deeper than the JSON parser goes is a 400, not a traceback."""
    deep = "[" * 20_000 + "1" + "]" * 20_000
    body = f'{{"sessionId": "{uuid.uuid4()}", "checkoutItems": {deep}, "totalAmount": 1}}'
    response = raw_post(client, "track/checkout-start", body)
    assert response.status_code == 400, response.text
    assert response.json() == {"detail": "There was an error parsing the body"}
    assert all(n == 0 for n in row_counts(db).values())


# Every text field of the ingestion models, with its limit, and the columns it lands in.
_FIELDS = [
    (SessionStartIn, "userId", [(sessions_t, "user_id"), (checkouts_t, "user_id")]),
    (SessionStartIn, "email", [(sessions_t, "email"), (checkouts_t, "email")]),
    (SessionStartIn, "phone", [(sessions_t, "phone"), (checkouts_t, "phone")]),
    (SessionStartIn, "eventId", [(events_t, "event_id")]),
    (PageVisitIn, "pageIdentifier", [(visits_t, "page_identifier"),
                                      (sessions_t, "current_page_identifier")]),
    (PageVisitIn, "pageUrl", [(visits_t, "page_url")]),
    (CheckoutStartIn, "paymentMethod", [(checkouts_t, "payment_method"),
                                        (errors_t, "payment_method")]),
    (PaymentStartIn, "paymentMethod", [(checkouts_t, "payment_method"),
                                       (errors_t, "payment_method")]),
    (PaymentErrorIn, "paymentMethod", [(checkouts_t, "payment_method"),
                                       (errors_t, "payment_method")]),
    (PaymentErrorIn, "errorCode", [(errors_t, "error_code")]),
    (PaymentErrorIn, "errorMessage", [(errors_t, "error_message")]),
    (NestedErrorDetails, "errorCode", [(errors_t, "error_code")]),
    (NestedErrorDetails, "errorMessage", [(errors_t, "error_message")]),
    (NestedErrorDetails, "url", [(errors_t, "page_url")]),
]


def test_every_text_limit_fits_its_column() -> None:
    """No model accepts a longer text than the column it is stored in (PostgreSQL enforces)."""
    for model, alias, columns in _FIELDS:
        schema = model.model_json_schema(by_alias=True)["properties"][alias]
        limit = max(option.get("maxLength", 0) for option in schema.get("anyOf", [schema]))
        assert limit > 0, (model.__name__, alias)
        for table, name in columns:
            assert table.c[name].type.length >= limit, (model.__name__, alias, table.name)


def test_longest_accepted_payment_method_is_stored(
    client: httpx.Client, db: Engine, server: LiveServer
) -> None:
    """A paymentMethod of 255 characters (the API's limit) is stored on both databases."""
    method = "m" * 255
    sid = start(client)
    post(client, "track/checkout-start", {"sessionId": sid, "checkoutItems": [],
                                          "totalAmount": 1, "paymentMethod": method})
    post(client, "track/payment-start", {"sessionId": sid, "paymentMethod": method})
    post(client, "track/payment-error", {"sessionId": sid, "errorCode": "x",
                                         "paymentMethod": method})
    [checkout] = rows(db, checkouts_t)
    [error] = rows(db, errors_t)
    assert checkout.payment_method == error.payment_method == method
    too_long = client.post(f"{P}/track/payment-start",
                           json={"sessionId": sid, "paymentMethod": method + "m"})
    assert too_long.status_code == 422
    assert too_long.json()["detail"] == "paymentMethod: String should have at most 255 characters"
    [listed] = client.get(f"{P}/payment-errors", headers=server.auth).json()
    assert listed["payment_method"] == method

