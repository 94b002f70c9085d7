"""GDPR erasure over the API: ``DELETE /api/metrics/subjects`` (bearer token)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status

from nilemetrics.protocol import API_PREFIX
from nilemetrics.server.erasure import (
    Subject,
    SubjectError,
    checkpoint_sqlite,
    ensure_erasure_key,
    erase_subject,
)
from nilemetrics.server.state import StateDep, TokenDep

router = APIRouter(prefix=API_PREFIX, tags=["operations"], dependencies=[TokenDep])


@router.delete("/subjects")
async def forget_subject(
    state: StateDep,
    email: Annotated[str | None, Query(max_length=320, description="The person's email.")] = None,
    phone: Annotated[str | None, Query(max_length=64, description="The person's phone.")] = None,
    user_id: Annotated[str | None, Query(max_length=255, description="The shop's user id.")] = None,
    session_id: Annotated[str | None, Query(max_length=36, description="One session id.")] = None,
) -> dict[str, Any]:
    """Erase every trace of one person (right to erasure); answers per-table counts.

    The erasure is one transaction in the server's writer, audited under a keyed
    hash; live numbers drop the person's sessions at once.
    """
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
