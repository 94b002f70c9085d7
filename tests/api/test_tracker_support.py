"""What the browser tracker needs from the server: its script, its own session ids,
identify() for a known session, and ``?privacy=1`` for GPC / DNT / opt-out."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from nilemetrics.server.tables import events_t, sessions_t
from tests.api.conftest import rows
from tests.api.journeys import P, metrics
from tests.support import LiveServer

STATIC = Path(__file__).parents[2] / "src" / "nilemetrics" / "server" / "static"


def test_tracker_is_served_small_cacheable_and_versioned(client: httpx.Client) -> None:
    """``/tracker.js``: JavaScript, gzipped under 2,560 bytes, ETag, and an immutable twin."""
    response = client.get("/tracker.js", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in response.headers["vary"]
    assert "max-age=3600" in response.headers["cache-control"]
    wire_size = int(response.headers["content-length"])
    assert wire_size < 2560, f"tracker is {wire_size} bytes gzipped"
    assert response.content == (STATIC / "tracker.min.js").read_bytes()  # httpx un-gzips

    version = response.headers["x-tracker-version"]
    assert response.headers["etag"] == f'"{version}"'
    again = client.get("/tracker.js", headers={"If-None-Match": f'"{version}"'})
    assert again.status_code == 304 and again.content == b""

    pinned = client.get(f"/tracker-{version}.js")
    assert pinned.status_code == 200
    assert pinned.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert pinned.content == response.content

    stale = client.get("/tracker-0123456789ab.js")
    assert stale.status_code == 404
    assert stale.json() == {"detail": "no tracker version '0123456789ab'; use /tracker.js"}


def test_served_tracker_is_built_from_the_current_source() -> None:
    """tracker.min.js names the SHA-256 of tracker.js it was built from."""
    header = (STATIC / "tracker.min.js").read_text().splitlines()[0]
    built_from = re.search(r"source sha256 ([0-9a-f]{16})", header)
    assert built_from, header
    source = hashlib.sha256((STATIC / "tracker.js").read_bytes()).hexdigest()[:16]
    assert built_from.group(1) == source, "tracker.js changed: run scripts/build-tracker.sh"
    assert len(gzip.compress((STATIC / "tracker.min.js").read_bytes(), 9)) < 2560


TRACKER_SOURCE = (STATIC / "tracker.js").read_text()
_EVENT_TYPES_BLOCK = re.search(r"^ *const EVENT_TYPES = \{\n(.*?)^ *\};", TRACKER_SOURCE,
                               re.M | re.S)


def _tracker_event_types() -> dict[str, str]:
    """``EVENT_TYPES`` in tracker.js: its name for each event type, and the type sent."""
    block = _EVENT_TYPES_BLOCK
    assert block, "tracker.js has no `const EVENT_TYPES = {...};` block"
    entries: dict[str, str] = {}
    for line in block.group(1).splitlines():
        entry = re.fullmatch(r'\s*(\w+): "([^"]+)",', line)
        # Every line must be an entry, so that none is skipped unchecked.
        assert entry, f"EVENT_TYPES line not understood: {line!r}"
        entries[entry.group(1)] = entry.group(2)
    return entries


TRACKER_EVENT_TYPES = _tracker_event_types()

# What the tracker's methods put in each type's event, besides type, sessionId and eventId.
_TRACKER_FIELDS: dict[str, dict[str, object]] = {
    "session-start": {"userId": "u-7", "email": "ada@example.com", "phone": "+1 555 0100"},
    "page-visit": {"pageType": "offer", "pageIdentifier": "black-friday",
                   "pageUrl": "https://shop.test/offer/black-friday"},
    "checkout-start": {"checkoutItems": [{"id": "book-1", "quantity": 2, "price": 19.99}],
                       "totalAmount": 39.98, "paymentMethod": "card"},
    "payment-start": {"paymentMethod": "card"},
    "event": {"name": "add_to_cart", "properties": {"sku": "book-1", "quantity": 2,
                                                   "gift": False}},
    "payment-error": {"errorDetails": {
        "errorCode": "card_declined", "errorMessage": "Declined", "errorDetails": {"bank": "x"},
        "timestamp": "2024-05-01T12:00:00.000Z", "userAgent": "Mozilla/5.0",
        "url": "https://shop.test/payment"}},
}


def test_tracker_sends_event_types_only_through_event_types() -> None:
    """Every event tracker.js queues names its type from EVENT_TYPES, the one list of them."""
    source = TRACKER_SOURCE
    assert len(TRACKER_EVENT_TYPES) == len(set(TRACKER_EVENT_TYPES.values()))
    queued = re.findall(r"\bqueueEvent\(\s*([^,)]*)", source)
    assert queued, "no queueEvent(...) calls found in tracker.js"
    for argument in queued:
        assert re.fullmatch(r"EVENT_TYPES\.\w+", argument), f"queueEvent({argument}, ...)"
    used = set(re.findall(r"\bEVENT_TYPES\.(\w+)", source))
    assert used - TRACKER_EVENT_TYPES.keys() == set(), "EVENT_TYPES names used but not defined"
    assert TRACKER_EVENT_TYPES.keys() - used == set(), "EVENT_TYPES entries never sent"
    # No type spelt out anywhere else (a second copy could drift from the list).
    assert _EVENT_TYPES_BLOCK
    outside = source[: _EVENT_TYPES_BLOCK.start()] + source[_EVENT_TYPES_BLOCK.end():]
    for event_type in TRACKER_EVENT_TYPES.values():
        assert f'"{event_type}"' not in outside, f"{event_type!r} outside EVENT_TYPES"


@pytest.mark.parametrize("event_type", sorted(TRACKER_EVENT_TYPES.values()))
def test_batch_endpoint_accepts_each_type_the_tracker_sends(
    client: httpx.Client, db: Engine, event_type: str
) -> None:
    """Each EVENT_TYPES string, in the body the tracker sends, is stored by /events."""
    sid = str(uuid.uuid4())
    started = client.post(f"{P}/events", content=json.dumps({"events": [
        {"type": "session-start", "sessionId": sid, "eventId": str(uuid.uuid4())}]}),
        headers={"Content-Type": "text/plain"})
    assert started.status_code == 200, started.text
    event = {"type": event_type, "sessionId": sid, "eventId": str(uuid.uuid4()),
             **_TRACKER_FIELDS.get(event_type, {})}
    response = client.post(f"{P}/events", content=json.dumps({"events": [event]}),
                           headers={"Content-Type": "text/plain"})
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "accepted": 1, "duplicates": 0}
    assert [row.event_type for row in rows(db, events_t)] == ["session-start", event_type]


def test_batch_endpoint_refuses_a_type_it_does_not_know(
    client: httpx.Client, db: Engine
) -> None:
    """The check above means something: a misspelt type is a 422 and nothing is stored."""
    response = client.post(f"{P}/events", json={"events": [
        {"type": "page-visits", "sessionId": str(uuid.uuid4()), "pageType": "homepage"}]})
    assert response.status_code == 422
    assert [problem["field"] for problem in response.json()["errors"]] == ["events[0].type"]
    assert rows(db, events_t) == [] and rows(db, sessions_t) == []


def test_session_start_with_the_clients_own_id(client: httpx.Client, db: Engine) -> None:
    """The tracker makes its session id; session/start keeps it."""
    sid = str(uuid.uuid4())
    response = client.post(f"{P}/session/start", json={"sessionId": sid, "eventId": "e-1"})
    assert response.status_code == 200
    assert response.json() == {"sessionId": sid}
    [row] = rows(db, sessions_t)
    assert row.session_id == sid and row.is_active is True


def test_session_start_for_a_known_session_identifies_it(
    client: httpx.Client, db: Engine
) -> None:
    """identify(): contact fields reach a session already counted, on one row."""
    sid = str(uuid.uuid4())
    client.post(f"{P}/session/start", json={"sessionId": sid})
    client.post(f"{P}/track/page-visit", json={"sessionId": sid, "pageType": "homepage"})
    response = client.post(
        f"{P}/events",
        json={"events": [{"type": "session-start", "sessionId": sid, "userId": 7,
                          "email": "ada@example.com", "eventId": "id-1"}]},
    )
    assert response.json() == {"success": True, "accepted": 1, "duplicates": 0}
    [row] = rows(db, sessions_t)
    assert (row.user_id, row.email, row.phone) == ("7", "ada@example.com", None)
    assert row.current_page_type == "homepage"  # still on its page

    # A later identify with only a phone keeps the email.
    client.post(f"{P}/session/start", json={"sessionId": sid, "phone": "+1 555 0100"})
    [row] = rows(db, sessions_t)
    assert (row.email, row.phone) == ("ada@example.com", "+1 555 0100")


def test_batch_session_start_needs_a_session_id(client: httpx.Client, db: Engine) -> None:
    """In a batch, session-start must name its session; nothing is written otherwise."""
    response = client.post(
        f"{P}/events", json={"events": [{"type": "session-start", "email": "a@b.c"}]}
    )
    assert response.status_code == 422
    assert response.json()["detail"] == "events[0].sessionId: field required"
    assert rows(db, sessions_t) == [] and rows(db, events_t) == []


def test_privacy_query_flag_stores_nothing_personal(
    client: httpx.Client, db: Engine
) -> None:
    """``?privacy=1`` (the tracker saw GPC, DNT or an opt-out): counted, nothing personal."""
    sid = str(uuid.uuid4())
    body = {"events": [
        {"type": "session-start", "sessionId": sid, "email": "ada@example.com"},
        {"type": "page-visit", "sessionId": sid, "pageType": "checkout"},
    ]}
    response = client.post(f"{P}/events?privacy=1", content=json.dumps(body),
                           headers={"Content-Type": "text/plain"})
    assert response.status_code == 200, response.text
    [row] = rows(db, sessions_t)
    assert (row.email, row.ip_address, row.user_agent) == (None, None, None)
    assert row.current_page_type == "checkout"


def test_privacy_flag_counts_the_session(client: httpx.Client, server: LiveServer) -> None:
    """An anonymous session is still a live session on its page."""
    sid = str(uuid.uuid4())
    client.post(f"{P}/track/page-visit?privacy=1", json={"sessionId": sid, "pageType": "homepage"})
    live = metrics(client, server.auth)
    assert live["homepage"] == 1 and live["liveSessions"] == 1


def test_an_origin_not_allowed_is_reported_once(
    client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    """Events from a shop origin missing from ALLOWED_ORIGINS are stored, but the
    browser hides the answers: the operator is told, once per origin."""
    sid = str(uuid.uuid4())
    caplog.set_level(logging.WARNING, logger="nilemetrics.server.middleware")
    for _ in range(3):
        response = client.post(
            f"{P}/track/page-visit",
            json={"sessionId": sid, "pageType": "homepage"},
            headers={"Origin": "https://forgotten-shop.example"},
        )
        assert response.status_code == 200
        assert "access-control-allow-origin" not in response.headers
    allowed = client.post(f"{P}/track/page-visit", json={"sessionId": sid, "pageType": "other"},
                          headers={"Origin": "http://shop.test"})
    assert allowed.headers["access-control-allow-origin"] == "http://shop.test"
    warnings = [r.getMessage() for r in caplog.records if "not an allowed origin" in r.getMessage()]
    assert len(warnings) == 1
    assert "https://forgotten-shop.example" in warnings[0]
    assert "--allowed-origin" in warnings[0]
