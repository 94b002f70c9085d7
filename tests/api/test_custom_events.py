"""Custom events (track/event and the batch type ``event``) over real HTTP, both databases."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from nilemetrics.server.tables import events_t, sessions_t
from tests.api.conftest import row_counts, rows
from tests.api.journeys import P, metrics, post, start, visit
from tests.support import LiveServer


def test_custom_event_is_logged_with_its_name_and_properties(
    client: httpx.Client, db: Engine
) -> None:
    """track/event stores one event-log row: type event, the name column, the properties."""
    sid = start(client)
    props = {"sku": "tv-55", "quantity": 2, "price": 499.99, "gift": True}
    post(client, "track/event", {"sessionId": sid, "name": "add_to_cart", "properties": props})
    [row] = rows(db, events_t, events_t.c.event_type == "event")
    assert (row.session_id, row.name) == (sid, "add_to_cart")
    assert row.payload == {"name": "add_to_cart", "properties": props}
    [session] = rows(db, sessions_t)
    assert session.session_id == sid


def test_batch_event_type_and_idempotent_event_id(client: httpx.Client, db: Engine) -> None:
    """The batch type ``event`` is applied in order with the others; a repeated eventId is not."""
    sid = start(client)
    body = {"events": [
        {"type": "page-visit", "sessionId": sid, "pageType": "product", "pageIdentifier": "a"},
        {"type": "event", "sessionId": sid, "name": "size_chart", "eventId": "e-1"},
        {"type": "event", "sessionId": sid, "name": "wishlist", "properties": {"sku": "a"}},
    ]}
    response = client.post(f"{P}/events", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "accepted": 3, "duplicates": 0}
    again = client.post(f"{P}/events", json={"events": [body["events"][1]]})
    assert again.json() == {"success": True, "accepted": 0, "duplicates": 1}
    names = [r.name for r in rows(db, events_t, events_t.c.event_type == "event")]
    assert names == ["size_chart", "wishlist"]


def test_live_metrics_count_custom_events_of_the_last_five_minutes(
    client: httpx.Client, server: LiveServer
) -> None:
    """customEvents: per name, most first, only the last 5 minutes."""
    sid = start(client)
    visit(client, sid, "homepage")
    post(client, "track/event", {"sessionId": sid, "name": "old_one"})
    server.clock.advance(301)
    for name in ("signup", "add_to_cart", "add_to_cart"):
        post(client, "track/event", {"sessionId": sid, "name": name})
    m = metrics(client, server.auth)
    assert m["customEvents"] == {"add_to_cart": 2, "signup": 1}
    assert list(m["customEvents"]) == ["add_to_cart", "signup"]


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("name not a slug", {"name": "add to cart"},
     "name: must be a slug of 1 to 64 letters, digits, _ or - (e.g. add_to_cart)"),
    ("name too long", {"name": "n" * 65},
     "name: must be a slug of 1 to 64 letters, digits, _ or - (e.g. add_to_cart)"),
    ("no name", {}, "name: field required"),
    ("nested property", {"name": "x", "properties": {"a": {"b": 1}}},
     "properties.a: must be a string, a number or true/false"),
    ("null property", {"name": "x", "properties": {"a": None}},
     "properties.a: must be a string, a number or true/false"),
    ("long text", {"name": "x", "properties": {"a": "y" * 256}},
     "properties.a: must be at most 255 characters"),
    ("21 properties", {"name": "x", "properties": {f"p{i}": i for i in range(21)}},
     "properties: Dictionary should have at most 20 items after validation, not more"),
    ("long property name", {"name": "x", "properties": {"k" * 65: 1}},
     f"properties.{'k' * 65}.[key]: String should have at most 64 characters"),
    ("properties a list", {"name": "x", "properties": [1]},
     "properties: Input should be a valid dictionary"),
    ("experiment without variant", {"name": "experiment", "properties": {"experiment": "b"}},
     "properties: an experiment assignment needs variant: a slug of 1 to 64 letters, digits, "
     "_ or -"),
    ("click off the grid", {"name": "click", "properties": {"path": "a", "x": 10, "y": 0}},
     "properties: a click needs x: a whole number from 0 to 9"),
]


@pytest.mark.parametrize(("body", "detail"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_custom_events_get_a_422_naming_the_field_and_store_nothing(
    client: httpx.Client, db: Engine, body: dict[str, Any], detail: str
) -> None:
    """Each malformed event is a 422 whose detail names the problem; nothing is written."""
    sid = str(uuid.uuid4())
    before = row_counts(db)
    single = client.post(f"{P}/track/event", json={"sessionId": sid, **body})
    assert single.status_code == 422, single.text
    assert single.json()["detail"] == detail
    batch = client.post(f"{P}/events", json={"events": [{"type": "event", "sessionId": sid,
                                                         **body}]})
    assert batch.status_code == 422
    assert batch.json()["detail"] == f"events[0].{detail}"
    assert row_counts(db) == before


def test_custom_event_body_over_the_limit_is_a_413(client: httpx.Client, db: Engine) -> None:
    """The 64 KiB body cap holds for track/event as for every ingestion route."""
    sid = str(uuid.uuid4())
    before = row_counts(db)
    response = client.post(f"{P}/track/event", json={"sessionId": sid, "name": "x",
                                                     "properties": {"a": "y" * 70_000}})
    assert response.status_code == 413
    assert response.json() == {"detail": "request body too large: the limit is 65536 bytes"}
    assert row_counts(db) == before
