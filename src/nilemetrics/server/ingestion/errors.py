"""What can go wrong when events are written, as the writer reports it to the HTTP side."""

from __future__ import annotations

from nilemetrics.server.db import DatabaseUnavailable

REFUSED = "the event was refused by the database"


class EventRejected(Exception):
    """The database refused an event that passed validation (reported as a 4xx).

    ``index``: the refused event's position in its request, when it was found.
    """

    def __init__(self, message: str = REFUSED, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class WriterBusy(DatabaseUnavailable):
    """The writer's queue is full: the database is not keeping up (503, retry later)."""


class ClientOverShare(Exception):
    """This client already has its share of the writer's queue waiting (429, retry later)."""


class WriteTimedOut(DatabaseUnavailable):
    """A request's events were not written in time; they never will be (503)."""


class StorageFull(DatabaseUnavailable):
    """The database's disk is full: nothing was stored (503 naming the cause)."""


class BatchRefused(Exception):
    """The writer process's database refused something in a batch (to be isolated)."""


class Abandoned(Exception):
    """The server gave up on the batch before its commit; it was rolled back."""


class Skipped(Exception):
    """The batch was sent behind one whose commit failed; it was not applied (send again)."""
