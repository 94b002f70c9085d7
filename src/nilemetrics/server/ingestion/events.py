"""From a validated request body to the event the writer applies, and what a batch did."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from nilemetrics.protocol.names import EventType
from nilemetrics.server.ingestion.privacy import RequestContext, minimise


@dataclass(slots=True)
class TrackedEvent:
    """One validated, minimised event, stamped with the server's receive time."""

    kind: EventType
    session_id: str
    at: datetime
    context: RequestContext
    body: BaseModel
    event_id: str | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # Batches are pickled to the writer process. The default for slots
        # dataclasses looks up dataclasses.fields() per object: plain arguments
        # are much cheaper (see benchmarks/results/ingest.json for the hand-off's cost).
        return (
            TrackedEvent,
            (self.kind, self.session_id, self.at, self.context, self.body, self.event_id),
        )


def tracked_event(
    kind: EventType, session_id: str, body: BaseModel, context: RequestContext, at: datetime
) -> TrackedEvent:
    """The event for ``body``, minimised under the sender's privacy choice."""
    return TrackedEvent(
        kind=kind,
        session_id=session_id,
        at=at,
        context=context,
        body=minimise(body, context),
        event_id=getattr(body, "event_id", None),
    )


@dataclass(slots=True)
class BatchOutcome:
    """What a committed batch did: per event whether it was applied (or a duplicate)."""

    applied: list[bool]
    payment_errors: int = 0

    @property
    def changed(self) -> bool:
        """Whether anything was written besides nothing at all."""
        return any(self.applied)
