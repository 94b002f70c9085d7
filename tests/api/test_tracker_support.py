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
    """``/tracker.js``: JavaScript, gzipped under 2 KB, ETag, and an immutable twin."""
    response = client.get("/tracker.js", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in response.headers["vary"]
    assert "max-age=3600" in response.headers["cache-control"]
    wire_size = int(response.headers["content-length"])
    assert wire_size < 2048, f"tracker is {wire_size} bytes gzipped"
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
    assert len(gzip.compress((STATIC / "tracker.min.js").read_bytes(), 9)) < 2048


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
    assert response.json()["detail"] == "events[0].sessionId: Field required"
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
