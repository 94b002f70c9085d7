"""Bodies and answers of the operations endpoints (cleanup, erasure)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from nilemetrics.protocol.bodies import ClientBody, Identifier, Storable


class CleanupOut(BaseModel):
    """Answer of ``cleanup-sessions``."""

    success: Literal[True] = True
    ended: int


class SubjectIn(ClientBody):
    """Body of ``DELETE subjects``: the person to erase (any of the four, at least one)."""

    # Made storable like the text that was stored, so that the same person matches.
    email: Annotated[str, StringConstraints(max_length=320), Storable] | None = None
    phone: Annotated[str, StringConstraints(max_length=64), Storable] | None = None
    user_id: Identifier | None = Field(default=None, alias="userId")
    session_id: Annotated[str, StringConstraints(max_length=36)] | None = Field(
        default=None, alias="sessionId"
    )


class ErasureOut(BaseModel):
    """Answer of ``DELETE subjects``: rows deleted and scrubbed per table."""

    success: Literal[True] = True
    deleted: dict[str, int]
    scrubbed: dict[str, int]
    sessions: int = Field(description="How many sessions were the person's.")
    subject_hash: str = Field(
        alias="subjectHash", description="Keyed hash the erasure was audited under."
    )
    wal_checkpointed: bool = Field(alias="walCheckpointed")
