"""The append-only event log, and what makes a retried event change nothing."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from nilemetrics.ids import uuid7
from nilemetrics.protocol.names import EventType
from nilemetrics.server.ingestion.events import TrackedEvent
from nilemetrics.server.ingestion.statements import EventInsert, Writes
from nilemetrics.server.tables import events_t

#: Events fully recorded by their own tables (page_visits, user_sessions.last_activity).
#: Without an eventId to remember they are not copied into the event log: they are
#: nearly all the traffic, and a second copy would double the write volume.
RECORDED_ELSEWHERE = frozenset({EventType.PAGE_VISIT, EventType.SESSION_HEARTBEAT})


def scoped_event_id(session_id: str, event_id: str) -> str:
    """The log key of a session's event whose eventId another session already used."""
    digest = hashlib.sha256(f"{session_id}\n{event_id}".encode()).hexdigest()
    return f"scoped:{digest[:56]}"


def payload(event: TrackedEvent) -> dict[str, Any]:
    """What the log keeps of an event: its body as sent (camelCase), minus the ids."""
    data: dict[str, Any] = event.body.model_dump(
        mode="json", by_alias=True, exclude_none=True, exclude={"session_id", "event_id"}
    )
    return data


def log_events(conn: Connection, events: list[TrackedEvent], writes: Writes) -> list[bool]:
    """Append events to the log; return, per event, False when it repeats a logged one.

    Every event with an eventId is logged (that is what makes retries idempotent),
    and so is every event not in ``RECORDED_ELSEWHERE``. An eventId is a repeat
    only within its own session: an eventId another session used is logged under
    a key scoped to this session, so answers never tell whether someone else's
    eventId exists. Events without an eventId need no answer: their rows are queued
    on ``writes``.
    """
    applied = [True] * len(events)
    seen: set[tuple[str, str]] = set()
    client_rows: list[tuple[int, str, dict[str, Any]]] = []
    server_rows: list[dict[str, Any]] = []
    for index, event in enumerate(events):
        if event.event_id is None and event.kind in RECORDED_ELSEWHERE:
            continue
        row = {
            "event_type": str(event.kind),
            "session_id": event.session_id,
            "occurred_at": event.at,
            "payload": payload(event),
            "name": getattr(event.body, "name", None) if event.kind == EventType.EVENT else None,
        }
        if event.event_id is None:
            row["event_id"] = uuid7().hex
            server_rows.append(row)
        elif (event.session_id, event.event_id) in seen:
            applied[index] = False
        else:
            seen.add((event.session_id, event.event_id))
            row["event_id"] = event.event_id
            client_rows.append((index, event.event_id, row))
    if client_rows:
        _log_client_rows(conn, client_rows, applied)
    if server_rows:
        sql = writes.statements
        writes.bulk(
            sql.insert_events,
            [
                EventInsert(
                    event_id=r["event_id"],
                    event_type=r["event_type"],
                    session_id=r["session_id"],
                    occurred_at=sql.ts(r["occurred_at"]),
                    payload=sql.json(r["payload"]),
                    name=r["name"],
                )
                for r in server_rows
            ],
        )
    return applied


def _log_client_rows(
    conn: Connection, client_rows: list[tuple[int, str, dict[str, Any]]], applied: list[bool]
) -> None:
    """Insert rows with client-chosen eventIds; mark the repeats in ``applied``."""
    dialect_insert: Any = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = (
        dialect_insert(events_t)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(events_t.c.event_id, events_t.c.session_id)
    )
    inserted = set(conn.execute(stmt, [row for _, _, row in client_rows]).tuples())
    taken = [r for r in client_rows if (r[2]["event_id"], r[2]["session_id"]) not in inserted]
    if taken:
        # A list first: dict() of a Result takes it for a mapping (it has keys()).
        owners = dict(list(conn.execute(
            select(events_t.c.event_id, events_t.c.session_id)
            .where(events_t.c.event_id.in_(sorted({r[2]["event_id"] for r in taken})))
        ).tuples()))
        foreign = [r for r in taken if owners.get(r[2]["event_id"]) != r[2]["session_id"]]
        for _, event_id, row in foreign:
            row["event_id"] = scoped_event_id(row["session_id"], event_id)
        if foreign:
            inserted |= set(conn.execute(stmt, [row for _, _, row in foreign]).tuples())
    for index, _, row in client_rows:
        if (row["event_id"], row["session_id"]) not in inserted:
            applied[index] = False
