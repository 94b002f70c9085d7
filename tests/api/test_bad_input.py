"""Bad input gets a 4xx naming the problem, writes nothing, and never a 500."""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from tests.api.conftest import row_counts
from tests.api.journeys import P

SID = "7d0f7a5e-2c1b-4b8e-9a55-1f0d3c2b4a10"

CASES: list[tuple[str, str, Any, int, str]] = [
    ("wrong type", "track/page-visit", {"sessionId": 123, "pageType": "homepage"}, 422,
     "sessionId: Input should be a valid string"),
    ("not a uuid", "session/heartbeat", {"sessionId": "abc"}, 422,
     "sessionId: must be a UUID such as 3f2b8c1e-7d4a-4c3b-9e1f-2a5b6c7d8e9f"),
    ("missing sessionId", "session/heartbeat", {}, 422, "sessionId: field required"),
    ("missing pageType", "track/page-visit", {"sessionId": SID}, 422,
     "pageType: field required"),
    ("page type not a slug", "track/page-visit",
     {"sessionId": SID, "pageType": "basket page!"}, 422,
     "pageType: must be a slug of 1 to 64 letters, digits, _ or - (e.g. product_listing)"),
    ("page type too long", "track/page-visit", {"sessionId": SID, "pageType": "p" * 65}, 422,
     "pageType: must be a slug of 1 to 64 letters, digits, _ or - (e.g. product_listing)"),
    ("category without id", "track/page-visit", {"sessionId": SID, "pageType": "category"},
     422, "body: pageIdentifier is required for category pages"),
    ("url too long", "track/page-visit",
     {"sessionId": SID, "pageType": "homepage", "pageUrl": "https://s.test/" + "a" * 2040},
     422, "pageUrl: String should have at most 2048 characters"),
    ("identifier too long", "track/page-visit",
     {"sessionId": SID, "pageType": "offer", "pageIdentifier": "x" * 256}, 422,
     "pageIdentifier: String should have at most 255 characters"),
    ("too many items", "track/checkout-start",
     {"sessionId": SID, "checkoutItems": [{"id": i} for i in range(201)], "totalAmount": 1},
     422, "checkoutItems: List should have at most 200 items after validation, not 201"),
    ("negative amount", "track/checkout-start",
     {"sessionId": SID, "checkoutItems": [], "totalAmount": -5}, 422,
     "totalAmount: Input should be greater than or equal to 0"),
    ("amount as text", "track/checkout-start",
     {"sessionId": SID, "checkoutItems": [], "totalAmount": "lots"}, 422,
     "totalAmount: Input should be a valid decimal"),
    ("items not a list", "track/checkout-start",
     {"sessionId": SID, "checkoutItems": "tv", "totalAmount": 1}, 422,
     "checkoutItems: Input should be a valid list"),
    ("error code not text", "track/payment-error",
     {"sessionId": SID, "errorDetails": {"errorCode": {"a": 1}}}, 422,
     "errorDetails: errorCode: Input should be a valid string"),
    ("JSON array body", "session/heartbeat", [SID], 422,
     "body: Input should be a valid dictionary or object to extract fields from"),
    ("no body", "session/end", None, 422, "body: a JSON body is required"),
    ("event id too long", "session/heartbeat", {"sessionId": SID, "eventId": "e" * 65}, 422,
     "eventId: String should have at most 64 characters"),
]


@pytest.mark.parametrize(("case", "path", "body", "status", "detail"), CASES,
                         ids=[c[0] for c in CASES])
def test_bad_body_names_problem_and_writes_nothing(
    client: httpx.Client, db: Engine, case: str, path: str, body: Any, status: int, detail: str
) -> None:
    """Each class of bad input: exact status and message, no row written."""
    if body is None:
        response = client.post(f"{P}/{path}")
    else:
        response = client.post(f"{P}/{path}", json=body)
    assert response.status_code == status, response.text
    assert response.json()["detail"] == detail
    assert "Traceback" not in response.text
    assert all(n == 0 for n in row_counts(db).values())


def test_invalid_json_is_400(client: httpx.Client, db: Engine) -> None:
    """A body that is not JSON at all is a 400 that says so."""
    response = client.post(f"{P}/track/page-visit", content=b'{"sessionId": ',
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"detail": "request body is not valid JSON"}
    assert all(n == 0 for n in row_counts(db).values())


def test_oversize_body_is_413(client: httpx.Client, db: Engine) -> None:
    """A body over 64 KiB is refused before parsing."""
    body = {"sessionId": SID, "checkoutItems": [{"note": "x" * 70_000}], "totalAmount": 1}
    response = client.post(f"{P}/track/checkout-start", json=body)
    assert response.status_code == 413
    assert response.json() == {"detail": "request body too large: the limit is 65536 bytes"}
    assert all(n == 0 for n in row_counts(db).values())


def test_oversize_chunked_body_is_413(client: httpx.Client) -> None:
    """A body streamed without Content-Length is cut off at the cap too."""

    def chunks() -> Any:
        yield b'{"sessionId": "' + SID.encode() + b'", "pad": "'
        for _ in range(80):
            yield b"y" * 1024
        yield b'"}'

    response = client.post(f"{P}/session/heartbeat", content=chunks(),
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 413


def test_huge_number_and_nan_rejected(client: httpx.Client) -> None:
    """Amounts beyond the column and non-finite numbers are 422, not a database error."""
    for amount in (1e15, "NaN", "Infinity"):
        response = client.post(f"{P}/track/checkout-start",
                               json={"sessionId": SID, "checkoutItems": [], "totalAmount": amount})
        assert response.status_code == 422, (amount, response.text)
        assert response.json()["detail"].startswith("totalAmount: ")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_locked_database_answers_503_and_writes_nothing(
    client: httpx.Client, db: Engine, settings: Any
) -> None:
    """While another process holds the database's write lock, events get 503, not 500."""
    client.post(f"{P}/session/start")  # the schema exists and the server is warm
    before = row_counts(db)
    path = settings.database_url.removeprefix("sqlite:///")
    locker = sqlite3.connect(path, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        settings_timeout = 5.0
        response = client.post(f"{P}/track/page-visit",
                               json={"sessionId": str(uuid.uuid4()), "pageType": "homepage"},
                               timeout=settings_timeout + 10)
        assert response.status_code == 503
        assert response.json() == {
            "detail": "database unavailable; nothing was stored, retry later"
        }
        assert response.headers["retry-after"] == "1"
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert row_counts(db) == before
    # And the server recovers by itself once the lock is gone.
    ok = client.post(f"{P}/track/page-visit",
                     json={"sessionId": str(uuid.uuid4()), "pageType": "homepage"})
    assert ok.status_code == 200
