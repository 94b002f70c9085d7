"""eventId makes retries idempotent within a session, and reveals nothing about others."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import Engine

from nilemetrics.server.tables import events_t, sessions_t, visits_t
from tests.api.conftest import rows
from tests.api.journeys import P, post


def batch(client: httpx.Client, *events: dict[str, object]) -> dict[str, object]:
    """POST /events and return the answer."""
    response = client.post(f"{P}/events", json={"events": list(events)})
    assert response.status_code == 200, response.text
    answer: dict[str, object] = response.json()
    return answer


def test_session_start_with_someone_elses_event_id_gets_a_fresh_session(
    client: httpx.Client, db: Engine
) -> None:
    """Sending another session's eventId to session/start does not answer that session's id."""
    victim = str(uuid.uuid4())
    batch(client,
          {"type": "session-start", "sessionId": victim, "eventId": "victim-start",
           "email": "victim@example.com"},
          {"type": "page-visit", "sessionId": victim, "pageType": "homepage",
           "eventId": "victim-visit"})
    for event_id in ("victim-start", "victim-visit"):
        response = client.post(f"{P}/session/start", json={"eventId": event_id})
        assert response.status_code == 200
        answer = response.json()["sessionId"]
        assert answer != victim
        assert str(uuid.UUID(answer)) == answer
        # And asked again, the same (fresh) answer: a retry still works.
        assert client.post(f"{P}/session/start", json={"eventId": event_id}).json() == {
            "sessionId": answer
        }
    [victim_row] = rows(db, sessions_t, sessions_t.c.session_id == victim)
    assert victim_row.email == "victim@example.com"
    assert len(rows(db, sessions_t)) == 3


def test_retried_session_start_with_contact_answers_the_same_session(
    client: httpx.Client, db: Engine
) -> None:
    """The existing client's retry of session/start (same eventId and body) is one session."""
    body = {"eventId": "7c9e2d7e-start", "email": "ada@example.com", "userId": 7}
    first = client.post(f"{P}/session/start", json=body).json()
    again = client.post(f"{P}/session/start", json=body).json()
    assert first == again
    [session] = rows(db, sessions_t)
    assert (session.session_id, session.email, session.user_id) == (
        first["sessionId"], "ada@example.com", "7"
    )
    assert len(rows(db, events_t, events_t.c.event_id == "7c9e2d7e-start")) == 1


def test_batch_answer_does_not_tell_whether_another_sessions_event_id_exists(
    client: httpx.Client, db: Engine
) -> None:
    """An eventId used by another session counts as new (and is stored) in mine."""
    theirs, mine = str(uuid.uuid4()), str(uuid.uuid4())
    post(client, "track/page-visit", {"sessionId": theirs, "pageType": "homepage",
                                      "eventId": "shared-1"})
    visit = {"type": "page-visit", "sessionId": mine, "pageType": "search",
             "eventId": "shared-1"}
    assert batch(client, visit) == {"success": True, "accepted": 1, "duplicates": 0}
    # My own retry of it is a duplicate, as before.
    assert batch(client, visit) == {"success": True, "accepted": 0, "duplicates": 1}
    assert sorted(v.page_type for v in rows(db, visits_t)) == ["homepage", "search"]
    [their_visit] = rows(db, visits_t, visits_t.c.session_id == theirs)
    assert their_visit.page_type == "homepage"


def test_same_event_id_from_two_sessions_in_one_batch(client: httpx.Client, db: Engine) -> None:
    """Two sessions that pick the same eventId in one batch are both applied, once each."""
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    events = [
        {"type": "page-visit", "sessionId": a, "pageType": "homepage", "eventId": "same"},
        {"type": "page-visit", "sessionId": b, "pageType": "homepage", "eventId": "same"},
        {"type": "page-visit", "sessionId": b, "pageType": "homepage", "eventId": "same"},
    ]
    assert batch(client, *events) == {"success": True, "accepted": 2, "duplicates": 1}
    assert batch(client, *events) == {"success": True, "accepted": 0, "duplicates": 3}
    assert sorted(v.session_id for v in rows(db, visits_t)) == sorted([a, b])
