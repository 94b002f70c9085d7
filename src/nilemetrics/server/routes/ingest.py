"""Ingestion API called by the shop's pages (public, CORS for the shop's origins).

Every route is derived from the registry (``nilemetrics.protocol.registry.EVENTS``):
the single-event routes, the batch endpoint's item types and the fast path. A valid
single event takes the fast path (the body middleware hands it the bytes); the
route answers what the fast path declines (invalid bodies, with FastAPI's usual
error answers) and declares the route in OpenAPI. Both queue the event through
:func:`ingest`.
"""

from __future__ import annotations

import inspect
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.requests import HTTPConnection
from starlette.types import Message, Scope, Send

from nilemetrics.ids import uuid7
from nilemetrics.protocol.answers import BatchOut, SessionStartOut, SuccessOut
from nilemetrics.protocol.bodies import BatchIn, SessionEventIn, SessionStartIn
from nilemetrics.protocol.names import API_PREFIX, BATCH_PATH, EventType
from nilemetrics.protocol.registry import EVENTS, EventSpec
from nilemetrics.server.ingestion.errors import EventRejected
from nilemetrics.server.ingestion.events import TrackedEvent, tracked_event
from nilemetrics.server.ingestion.fair_queue import client_of
from nilemetrics.server.middleware import FastHandler
from nilemetrics.server.openapi import problems
from nilemetrics.server.state import ServerState, get_state
from nilemetrics.server.validation import describe_errors

router = APIRouter(
    prefix=API_PREFIX, tags=["ingestion"], responses=problems(400, 413, 422, 429, 503)
)


def _event(
    state: ServerState, conn: HTTPConnection, kind: EventType, session_id: str, body: BaseModel
) -> TrackedEvent:
    return tracked_event(kind, session_id, body, state.context(conn), state.now())


async def ingest(conn: HTTPConnection, kind: EventType, session_id: str, body: BaseModel) -> None:
    """Queue one event of ``conn``'s client; return once it is committed."""
    # No dependency injection on the hot path: each resolved dependency costs time.
    state = get_state(conn)
    await state.writer.submit(_event(state, conn, kind, session_id, body), client_of(conn.scope))


def _route_name(spec: EventSpec) -> str:
    """``/track/page-visit`` → ``track_page_visit`` (the OpenAPI operation's name)."""
    return spec.path.strip("/").replace("/", "_").replace("-", "_")


def _add_single_route(spec: EventSpec) -> None:
    """Declare ``spec``'s route: its body model validates, the event is queued."""
    kind = spec.kind

    async def endpoint(request: Request, body: SessionEventIn) -> SuccessOut:
        await ingest(request, kind, body.session_id, body)
        return SuccessOut()

    # The body's model is the registry's: FastAPI reads it from the signature.
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                              annotation=Request),
            inspect.Parameter("body", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                              annotation=spec.body),
        ],
        return_annotation=SuccessOut,
    )
    endpoint.__name__ = _route_name(spec)
    router.add_api_route(
        spec.path,
        endpoint,
        methods=["POST"],
        response_model=spec.answer,
        name=_route_name(spec),
        description=spec.summary,
    )


async def session_start(
    request: Request, body: SessionStartIn | None = None
) -> dict[str, str]:
    """Start a session; the body (optional) names a logged-in customer.

    With an ``eventId`` and no ``sessionId`` the new session's id is derived from
    the eventId, so a retried start gets the same answer; it never depends on what
    is stored (no other session's id can be learnt by sending its eventId).
    """
    body = body or SessionStartIn()
    if body.session_id is None and body.event_id is not None:
        # As if the client had made the id: a retry finds the session it started.
        body = body.model_copy(update={"session_id": retry_safe_session_id(body.event_id)})
    session_id = body.session_id or str(uuid7())
    await ingest(request, EventType.SESSION_START, session_id, body)
    return {"sessionId": session_id}


for _spec in EVENTS.values():
    if _spec.kind == EventType.SESSION_START:
        # Its body is optional and it answers with the session's id.
        router.add_api_route(
            _spec.path, session_start, methods=["POST"], response_model=SessionStartOut,
            name=_route_name(_spec),
        )
    else:
        _add_single_route(_spec)


#: Namespace of the session ids derived from a session/start's eventId.
_START_NAMESPACE = uuid.UUID("5b0c7a52-61a4-4d55-9a3c-1c9e3f1d2a70")


def retry_safe_session_id(event_id: str) -> str:
    """The session id that a session/start with this eventId (and no sessionId) gets."""
    return str(uuid.uuid5(_START_NAMESPACE, event_id))


#: The batch endpoint's item types, as ``EventType`` lists them (the 422 names them).
_BATCH_TYPES = ", ".join(kind for kind in EventType if kind in EVENTS)


@router.post(BATCH_PATH, response_model=BatchOut)
async def track_batch(
    request: Request, body: BatchIn
) -> BatchOut | JSONResponse:
    """Many events in one request, applied in order; each item has a ``type``.

    Types: every event type (session-start, with ``sessionId``, session-heartbeat,
    page-visit, checkout-start, payment-start, payment-error, payment-success,
    session-end, event); the other fields are those of the single-event route. All or
    nothing: one invalid item (or one the database refuses) rejects the whole
    request with a 422 naming it, and none of its events is stored.
    """
    state = get_state(request)
    events: list[TrackedEvent] = []
    problems: list[dict[str, Any]] = []
    for index, item in enumerate(body.events):
        kind_name = item.get("type")
        spec = EVENTS.get(kind_name) if isinstance(kind_name, str) else None  # type: ignore[call-overload]
        if spec is None:
            problems.append(
                {"field": f"events[{index}].type", "message": f"must be one of {_BATCH_TYPES}"}
            )
            continue
        try:
            parsed = spec.body.model_validate(item)
        except ValidationError as exc:
            problems.extend(describe_errors(exc.errors(), prefix=f"events[{index}]"))
            continue
        if parsed.session_id is None:  # session-start, whose model makes it optional
            problems.append({"field": f"events[{index}].sessionId", "message": "field required"})
            continue
        events.append(_event(state, request, spec.kind, parsed.session_id, parsed))
    if problems:
        return JSONResponse(
            status_code=422, content={"detail": _summary(problems), "errors": problems}
        )
    try:
        results = await state.writer.submit_many(events, client_of(request.scope))
    except EventRejected as exc:
        # All or nothing: none of this request's events was stored.
        field = "events" if exc.index is None else f"events[{exc.index}]"
        problems = [{"field": field, "message": str(exc)}]
        return JSONResponse(
            status_code=422, content={"detail": _summary(problems), "errors": problems}
        )
    accepted = sum(results)
    return BatchOut(accepted=accepted, duplicates=len(results) - accepted)


_SUCCESS_BODY = SuccessOut().model_dump_json().encode()
_SUCCESS_HEADERS = (
    (b"content-length", str(len(_SUCCESS_BODY)).encode()),
    (b"content-type", b"application/json"),
)


def fast_handlers() -> dict[str, FastHandler]:
    """Full paths of the registry's fast routes -> their fast-path handlers.

    The routes stay the API's declaration (OpenAPI) and answer whatever the fast
    path declines: a body that fails validation is replayed to them, so error
    answers are FastAPI's. Valid bodies are validated by the same model, queued
    by the same :func:`ingest`, and answered only after their batch is committed.
    """
    return {API_PREFIX + spec.path: _fast_handler(spec) for spec in EVENTS.values() if spec.fast}


def _fast_handler(spec: EventSpec) -> FastHandler:
    kind, model = spec.kind, spec.body

    async def handle(scope: Scope, body: bytes, send: Send) -> bool:
        try:
            parsed = model.model_validate_json(body)
        except ValidationError:
            return False  # the route answers with the usual 400/422
        if parsed.session_id is None:
            return False  # only session/start may leave it out, and it is not fast
        try:
            await ingest(HTTPConnection(scope), kind, parsed.session_id, parsed)
        except Exception as exc:
            await _answer_exception(scope, send, exc)
            return True
        # Fresh messages: middleware (CORS) adds headers to the list it is sent.
        await send(
            {"type": "http.response.start", "status": 200, "headers": list(_SUCCESS_HEADERS)}
        )
        await send({"type": "http.response.body", "body": _SUCCESS_BODY})
        return True

    return handle


async def _answer_exception(scope: Scope, send: Send, exc: Exception) -> None:
    """Answer ``exc`` with the application's own exception handler (as the router would)."""
    handlers: dict[Any, Any] = scope["app"].exception_handlers
    for cls in type(exc).__mro__:
        handler = handlers.get(cls)
        if handler is not None:
            break
    else:
        raise exc
    response = handler(Request(scope), exc)
    if inspect.isawaitable(response):
        response = await response

    async def no_body() -> Message:
        return {"type": "http.disconnect"}

    await response(scope, no_body, send)


def _summary(problems: list[dict[str, Any]]) -> str:
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"{first['field']}: {first['message']}{more}"
