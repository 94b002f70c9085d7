"""``nilemetrics`` with some of its abuse guards switched off: only for measuring their cost.

    python -m benchmarks.guards_off http,share serve --port 8000 ...

The first argument names what to switch off, comma-separated (``none``: nothing),
the rest is the ``nilemetrics`` command line:

- ``http``: uvicorn's own httptools protocol instead of ``GuardedHttpProtocol``
  (no whole-request deadline, header cap or connection cap; keep-alive timeout kept);
- ``share``: no per-client share of the writer's queue (neither the 429 before the
  body is read nor the writer's own check); the queue's total cap stays.

Never for serving real traffic: these guards are what keeps one client from
taking the server down (README, the settings table: HTTP_REQUEST_TIMEOUT ... WRITER_CLIENT_SHARE).
"""

from __future__ import annotations

import sys
from typing import Any

from nilemetrics.config import Settings
from nilemetrics.server import http_guard
from nilemetrics.server.ingestion.writer import GroupCommitWriter

GUARDS = ("http", "share")


def switch_off(names: set[str]) -> None:
    """Patch the named guards out of this process (before the server starts)."""
    unknown = names - set(GUARDS)
    if unknown:
        sys.exit(f"unknown guard(s): {', '.join(sorted(unknown))}; known: {', '.join(GUARDS)}")
    if "http" in names:
        def plain(settings: Settings) -> dict[str, Any]:
            return {"http": "httptools", "timeout_keep_alive": settings.http_keep_alive_timeout}

        http_guard.uvicorn_limits = plain
    if "share" in names:
        admit = GroupCommitWriter._admit

        def admit_any_client(self: GroupCommitWriter, count: int,
                             client: str | None = None) -> None:
            admit(self, count)

        GroupCommitWriter._admit = admit_any_client  # type: ignore[method-assign]
        GroupCommitWriter.client_full = lambda self, client: False  # type: ignore[method-assign]


def main() -> None:
    """Switch off what argv[1] names, then run the nilemetrics CLI on the rest."""
    names = {n for n in sys.argv[1].split(",") if n and n != "none"}
    switch_off(names)
    sys.argv = ["nilemetrics", *sys.argv[2:]]
    from nilemetrics.cli.main import main as cli

    cli()


if __name__ == "__main__":
    main()
