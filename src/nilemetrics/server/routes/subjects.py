"""GDPR erasure over the API: ``DELETE /api/metrics/subjects`` (bearer token)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Response, status

from nilemetrics.protocol import API_PREFIX
from nilemetrics.protocol.operations import ErasureOut, SubjectIn
from nilemetrics.server.erasure import (
    Subject,
    SubjectError,
    checkpoint_sqlite,
    ensure_erasure_key,
    erase_subject,
)
from nilemetrics.server.openapi import problems
from nilemetrics.server.state import StateDep, TokenDep

router = APIRouter(
    prefix=API_PREFIX,
    tags=["operations"],
    dependencies=[TokenDep],
    responses=problems(400, 401, 413, 422, 503),
)

#: RFC 9745 ``Deprecation`` of the query form: 2026-12-01 (personal data in URLs ends
#: up in access logs, proxies and browser history).
QUERY_FORM_DEPRECATED = "@1796083200"


def _query(description: str, max_length: int) -> Any:
    return Query(
        max_length=max_length,
        deprecated=True,
        description=f"{description} Deprecated: send it in the JSON body.",
    )


@router.delete("/subjects", response_model=ErasureOut)
async def forget_subject(
    state: StateDep,
    response: Response,
    body: Annotated[SubjectIn | None, Body()] = None,
    email: Annotated[str | None, _query("The person's email.", 320)] = None,
    phone: Annotated[str | None, _query("The person's phone.", 64)] = None,
    user_id: Annotated[str | None, _query("The shop's user id.", 255)] = None,
    session_id: Annotated[str | None, _query("One session id.", 36)] = None,
) -> dict[str, Any]:
    """Erase every trace of one person (right to erasure); answers per-table counts.

    The person goes in the JSON body, ``{"email": …, "phone": …, "userId": …,
    "sessionId": …}``, so that their data never appears in a URL. The query
    form still works, is masked in the logs, and is answered with a
    ``Deprecation`` header. The erasure is one transaction in the server's
    writer, audited under a keyed hash; live numbers drop the person's sessions
    at once.
    """
    queried = any(v is not None for v in (email, phone, user_id, session_id))
    given = body is not None and any(
        v is not None for v in (body.email, body.phone, body.user_id, body.session_id)
    )
    if queried and given:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail="give the person in the JSON body or in the query string, not both",
        )
    if body is not None and not queried:
        email, phone, user_id, session_id = body.email, body.phone, body.user_id, body.session_id
    if queried:
        response.headers["Deprecation"] = QUERY_FORM_DEPRECATED
    try:
        subject = Subject(email=email, phone=phone, user_id=user_id, session_id=session_id)
    except SubjectError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None
    key = await asyncio.to_thread(ensure_erasure_key, state.settings.config_dir)
    now = state.now()
    result = await state.writer.run_job(
        lambda conn: erase_subject(conn, subject, key=key, now=now, via="api")
    )
    state.hub.mark_dirty(errors=True)
    checkpointed = await asyncio.to_thread(checkpoint_sqlite, state.engine)
    return {"success": True, **result.as_dict(), "walCheckpointed": checkpointed}
