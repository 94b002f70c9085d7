"""Answers of the ingestion API, and the error answers every route shares."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class SuccessOut(BaseModel):
    """Answer of every single-event route but ``session/start``."""

    success: Literal[True] = True


class SessionStartOut(BaseModel):
    """Answer of ``session/start``."""

    session_id: str = Field(alias="sessionId", json_schema_extra={"format": "uuid"})


class BatchOut(BaseModel):
    """Answer of the batch endpoint."""

    success: Literal[True] = True
    accepted: int
    duplicates: int


class ProblemOut(BaseModel):
    """An error answer: what went wrong, in one line."""

    detail: str


class FieldProblemOut(BaseModel):
    """One field's problem in a 422 answer."""

    field: str = Field(description='Where, e.g. "pageType" or "events[2].sessionId".')
    message: str


class ValidationProblemOut(BaseModel):
    """A 422 answer: the first problem in one line, and every problem per field.

    ``errors`` is absent when the problem is not one field's (an erasure request
    naming nobody, an event the database refused).
    """

    detail: str = Field(description='"field: message", e.g. "sessionId: field required".')
    errors: list[FieldProblemOut] = Field(default_factory=list)
