"""PostgreSQL LISTEN/NOTIFY: changes committed by any `serve` process reach this one's
WebSocket subscribers (DESIGN.md "Beyond one process")."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

#: The channel every server process LISTENs on; writers NOTIFY it at commit.
NOTIFY_CHANNEL = "nilemetrics_changes"
#: The statement that notifies it (parameters: the channel, the payload).
NOTIFY_SQL = "SELECT pg_notify(%s, %s)"


def psycopg_conninfo(sqlalchemy_url: str) -> str:
    """The libpq connection string for a ``postgresql+psycopg://`` URL."""
    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


async def listen(
    sqlalchemy_url: str,
    on_change: Callable[[str], None],
    *,
    max_backoff: float = 10.0,
) -> None:
    """Call ``on_change(payload)`` for every notification, reconnecting forever."""
    conninfo = psycopg_conninfo(sqlalchemy_url)
    backoff = 0.5
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                backoff = 0.5
                # Anything may have changed while we were not listening.
                on_change("errors")
                async for note in conn.notifies():
                    on_change(note.payload)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("LISTEN connection lost (%s); retrying in %.1fs",
                        type(exc).__name__, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff)
