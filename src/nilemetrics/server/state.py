"""What a running server holds (on ``app.state.nm``) and the dependencies to reach it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, Request
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.requests import HTTPConnection

from nilemetrics.config import Settings
from nilemetrics.server.auth import require_token
from nilemetrics.server.clock import Clock
from nilemetrics.server.db import DatabaseUnavailable, describe_db_error
from nilemetrics.server.hub import Hub
from nilemetrics.server.ingestion.privacy import RequestContext, request_context
from nilemetrics.server.ingestion.writer import GroupCommitWriter

T = TypeVar("T")


@dataclass(frozen=True)
class Reader:
    """Read-only queries off the event loop, bounded in time."""

    engine: Engine
    timeout: float

    async def read(self, query: Callable[[Connection], T]) -> T:
        """Run a read-only ``query(conn)`` off the event loop; 503 if the database is down.

        Also 503 if it has not answered within ``timeout`` (a hung database): the
        thread waiting on it is left behind, not waited for.
        """
        try:
            with anyio.fail_after(self.timeout):
                return await anyio.to_thread.run_sync(self._read, query, abandon_on_cancel=True)
        except TimeoutError:
            raise DatabaseUnavailable(f"no answer within {self.timeout:g} s") from None

    def _read(self, query: Callable[[Connection], T]) -> T:
        try:
            with self.engine.connect() as conn, conn.begin():
                return query(conn)
        except (DBAPIError, PoolTimeout) as exc:  # PoolTimeout: every connection is stuck
            raise DatabaseUnavailable(describe_db_error(exc)) from exc


@dataclass
class ServerState:
    """The engine, writer, hub and settings of one server process."""

    settings: Settings
    engine: Engine
    clock: Clock
    tokens: list[str]
    writer: GroupCommitWriter
    hub: Hub
    reader: Reader

    def now(self) -> datetime:
        """The server's current time."""
        return self.clock.now()

    async def read(self, query: Callable[[Connection], T]) -> T:
        """Run a read-only ``query(conn)`` off the event loop (see :class:`Reader`)."""
        return await self.reader.read(query)

    def context(self, conn: HTTPConnection) -> RequestContext:
        """The storable client facts of a request under the privacy settings."""
        return request_context(
            conn, self.settings.ip_storage, self.settings.honour_privacy_signals
        )


def get_state(conn: HTTPConnection) -> ServerState:
    """The server state of the app handling this request."""
    state: ServerState = conn.app.state.nm
    return state


async def _state_dependency(request: Request) -> ServerState:
    # async on purpose: FastAPI runs sync dependencies in a worker thread, which
    # costs a thread hand-off on every ingestion request.
    return get_state(request)


StateDep = Annotated[ServerState, Depends(_state_dependency)]


async def check_token(request: Request) -> None:
    """Dependency: 401 unless a valid dashboard token is presented."""
    require_token(request, get_state(request).tokens)


TokenDep = Depends(check_token)
