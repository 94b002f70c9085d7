"""A server's shutdown says what it is waiting for when it takes long.

A shutdown that hangs is otherwise silent until the supervisor (or systemd) kills
the process: nothing tells which step never finished. :class:`ShutdownWatch`
names the step the shutdown is in and, if it is still running after
``report_after`` seconds, logs that step with what every waiting task and every
thread is doing. It reports from a thread of its own, so it reports even when
the event loop itself is blocked.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import traceback

log = logging.getLogger(__name__)

#: Seconds of shutdown after which what it waits for is logged.
REPORT_AFTER = 10.0


class ShutdownWatch:
    """The current step of a shutdown; a report of what it waits for if it takes long."""

    def __init__(self, report_after: float = REPORT_AFTER) -> None:
        self._report_after = report_after
        self._loop = asyncio.get_running_loop()
        self._step = "starting"
        self._timer = threading.Timer(report_after, self._report)
        self._timer.daemon = True
        self._timer.name = "nm-shutdown-watch"

    def __enter__(self) -> ShutdownWatch:
        self._timer.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._timer.cancel()

    def at(self, step: str) -> None:
        """The shutdown is now at ``step`` (until the next call)."""
        self._step = step

    def _report(self) -> None:
        lines = [f"shutdown still running after {self._report_after:g} s, at: {self._step}"]
        try:
            tasks = [task for task in asyncio.all_tasks(self._loop) if not task.done()]
        except RuntimeError:  # the set changed while it was read: report the threads
            tasks = []
        for task in tasks:
            lines.append(f"task {task.get_name()}: {' > '.join(_awaiting(task.get_coro()))}")
        names = {thread.ident: thread.name for thread in threading.enumerate()}
        for ident, frame in sys._current_frames().items():
            if ident == threading.get_ident():
                continue
            name = names.get(ident, str(ident))
            where = "".join(traceback.format_stack(frame)[-3:])
            lines.append(f"thread {name}:\n{where.rstrip()}")
        log.warning("\n".join(lines))


def _awaiting(coro: object) -> list[str]:
    """Where a suspended coroutine is, and where each coroutine it awaits is (outermost first)."""
    found: list[str] = []
    while coro is not None and len(found) < 20:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) \
            or getattr(coro, "ag_frame", None)
        if frame is None:
            found.append(type(coro).__name__)
            break
        found.append(f"{frame.f_code.co_name} ({frame.f_code.co_filename.rsplit('/', 1)[-1]}:"
                     f"{frame.f_lineno})")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) \
            or getattr(coro, "ag_await", None)
    return found
