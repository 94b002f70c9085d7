"""Ingestion API called by the shop's pages (public, CORS for the shop's origins)."""

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
from nilemetrics.protocol import API_PREFIX
from nilemetrics.server.fair_queue import client_of
from nilemetrics.server.ingest import EventKind, TrackedEvent
from nilemetrics.server.middleware import FastHandler
from nilemetrics.server.privacy import RequestContext
from nilemetrics.server.schemas import (
    BatchIn,
    BatchOut,
    CheckoutStartIn,
    PageVisitIn,
    PaymentErrorIn,
    PaymentStartIn,
    PaymentSuccessIn,
    SessionEventIn,
    SessionStartIn,
    SessionStartOut,
    SuccessOut,
    problems,
)
from nilemetrics.server.state import ServerState, get_state
from nilemetrics.server.validation import describe_errors
from nilemetrics.server.writer import EventRejected

router = APIRouter(prefix=API_PREFIX, tags=["ingestion"], responses=problems(400, 413, 422, 503))

_BATCH_MODELS: dict[str, tuple[EventKind, type[SessionEventIn | SessionStartIn]]] = {
    "session-start": ("session-start", SessionStartIn),
    "session-heartbeat": ("session-heartbeat", SessionEventIn),
    "page-visit": ("page-visit", PageVisitIn),
    "checkout-start": ("checkout-start", CheckoutStartIn),
    "payment-start": ("payment-start", PaymentStartIn),
    "payment-error": ("payment-error", PaymentErrorIn),
    "payment-success": ("payment-success", PaymentSuccessIn),
    "session-end": ("session-end", SessionEventIn),
}


def _minimise(body: BaseModel, ctx: RequestContext) -> BaseModel:
    """Drop personal data from a body whose sender asked not to be tracked."""
    if not ctx.anonymous:
        return body
    if isinstance(body, SessionStartIn):
        return body.model_copy(update={"user_id": None, "email": None, "phone": None})
    if isinstance(body, PaymentErrorIn) and isinstance(body.error_details, dict):
        details = {k: v for k, v in body.error_details.items() if k != "userAgent"}
        return body.model_copy(update={"error_details": details})
    return body


def _event(
    state: ServerState, request: HTTPConnection, kind: EventKind, session_id: str,
    body: BaseModel,
) -> TrackedEvent:
    ctx = state.context(request)
    return TrackedEvent(
        kind=kind,
        session_id=session_id,
        at=state.now(),
        context=ctx,
        body=_minimise(body, ctx),
        event_id=getattr(body, "event_id", None),
    )


async def _track(request: Request, kind: EventKind, body: SessionEventIn) -> SuccessOut:
    # No dependency injection on the hot path: each resolved dependency costs time.
    state = get_state(request)
    await state.writer.submit(
        _event(state, request, kind, body.session_id, body), client_of(request.scope)
    )
    return SuccessOut()


# The hottest routes first: FastAPI matches routes in order.
@router.post("/track/page-visit", response_model=SuccessOut)
async def track_page_visit(request: Request, body: PageVisitIn) -> SuccessOut:
    """The session is now on this page."""
    return await _track(request, "page-visit", body)


@router.post("/session/heartbeat", response_model=SuccessOut)
async def session_heartbeat(
    request: Request, body: SessionEventIn
) -> SuccessOut:
    """Keep a session live (the client sends one every 30 s while visible)."""
    return await _track(request, "session-heartbeat", body)


@router.post("/session/start", response_model=SessionStartOut)
async def session_start(
    request: Request, body: SessionStartIn | None = None
) -> dict[str, str]:
    """Start a session; the body (optional) names a logged-in customer.

    With an ``eventId`` and no ``sessionId`` the new session's id is derived from
    the eventId, so a retried start gets the same answer; it never depends on what
    is stored (no other session's id can be learnt by sending its eventId).
    """
    state = get_state(request)
    body = body or SessionStartIn()
    if body.session_id is None and body.event_id is not None:
        # As if the client had made the id: a retry finds the session it started.
        body = body.model_copy(update={"session_id": retry_safe_session_id(body.event_id)})
    session_id = body.session_id or str(uuid7())
    await state.writer.submit(
        _event(state, request, "session-start", session_id, body), client_of(request.scope)
    )
    return {"sessionId": session_id}


#: Namespace of the session ids derived from a session/start's eventId.
_START_NAMESPACE = uuid.UUID("5b0c7a52-61a4-4d55-9a3c-1c9e3f1d2a70")


def retry_safe_session_id(event_id: str) -> str:
    """The session id that a session/start with this eventId (and no sessionId) gets."""
    return str(uuid.uuid5(_START_NAMESPACE, event_id))


@router.post("/session/end", response_model=SuccessOut)
async def session_end(request: Request, body: SessionEventIn) -> SuccessOut:
    """End a session now (also accepted as a ``navigator.sendBeacon`` blob)."""
    return await _track(request, "session-end", body)


@router.post("/track/checkout-start", response_model=SuccessOut)
async def track_checkout_start(
    request: Request, body: CheckoutStartIn
) -> SuccessOut:
    """The session started a checkout with this basket."""
    return await _track(request, "checkout-start", body)


@router.post("/track/payment-start", response_model=SuccessOut)
async def track_payment_start(
    request: Request, body: PaymentStartIn
) -> SuccessOut:
    """The session's checkout went to payment."""
    return await _track(request, "payment-start", body)


@router.post("/track/payment-error", response_model=SuccessOut)
async def track_payment_error(
    request: Request, body: PaymentErrorIn
) -> SuccessOut:
    """A payment failed (nested ``errorDetails`` form or flat form)."""
    return await _track(request, "payment-error", body)


@router.post("/track/payment-success", response_model=SuccessOut)
async def track_payment_success(
    request: Request, body: PaymentSuccessIn
) -> SuccessOut:
    """The session's checkout was paid."""
    return await _track(request, "payment-success", body)


@router.post("/events", response_model=BatchOut)
async def track_batch(
    request: Request, body: BatchIn
) -> BatchOut | JSONResponse:
    """Many events in one request, applied in order; each item has a ``type``.

    Types: session-start (with ``sessionId``), session-heartbeat, page-visit,
    checkout-start, payment-start, payment-error, payment-success, session-end; the
    other fields are those of the single-event endpoint. All or nothing: one
    invalid item (or one the database refuses) rejects the whole request with a
    422 naming it, and none of its events is stored.
    """
    state = get_state(request)
    events: list[TrackedEvent] = []
    problems: list[dict[str, Any]] = []
    for index, item in enumerate(body.events):
        kind_name = item.get("type")
        spec = _BATCH_MODELS.get(kind_name) if isinstance(kind_name, str) else None
        if spec is None:
            problems.append(
                {
                    "field": f"events[{index}].type",
                    "message": "must be one of " + ", ".join(_BATCH_MODELS),
                }
            )
            continue
        kind, model = spec
        try:
            parsed = model.model_validate(item)
        except ValidationError as exc:
            problems.extend(describe_errors(exc.errors(), prefix=f"events[{index}]"))
            continue
        if parsed.session_id is None:  # session-start, whose model makes it optional
            problems.append({"field": f"events[{index}].sessionId", "message": "Field required"})
            continue
        events.append(_event(state, request, kind, parsed.session_id, parsed))
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


#: Single-event routes answered by the fast path (see ``fast_handlers``): those whose
#: bodies hold only text fields, where parsing the JSON bytes straight into the model
#: gives exactly the model FastAPI's parse-then-validate gives.
_FAST_MODELS: dict[str, tuple[EventKind, type[SessionEventIn]]] = {
    "/track/page-visit": ("page-visit", PageVisitIn),
    "/session/heartbeat": ("session-heartbeat", SessionEventIn),
    "/session/end": ("session-end", SessionEventIn),
    "/track/payment-start": ("payment-start", PaymentStartIn),
    "/track/payment-success": ("payment-success", PaymentSuccessIn),
}

_SUCCESS_BODY = SuccessOut().model_dump_json().encode()
_SUCCESS_HEADERS = (
    (b"content-length", str(len(_SUCCESS_BODY)).encode()),
    (b"content-type", b"application/json"),
)


def fast_handlers() -> dict[str, FastHandler]:
    """Full paths of the single-event routes -> their fast-path handlers.

    The routes above stay the API's declaration (OpenAPI) and answer whatever the
    fast path declines: a body that fails validation is replayed to them, so error
    answers are FastAPI's as before. Valid bodies are validated by the same model,
    queued the same way, and answered only after their batch is committed.
    """
    return {
        API_PREFIX + path: _fast_handler(kind, model)
        for path, (kind, model) in _FAST_MODELS.items()
    }


def _fast_handler(kind: EventKind, model: type[SessionEventIn]) -> FastHandler:
    async def handle(scope: Scope, body: bytes, send: Send) -> bool:
        try:
            parsed = model.model_validate_json(body)
        except ValidationError:
            return False  # the route answers with the usual 400/422
        conn = HTTPConnection(scope)
        state = get_state(conn)
        try:
            await state.writer.submit(
                _event(state, conn, kind, parsed.session_id, parsed), client_of(scope)
            )
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
