"""SIGTERM and SIGHUP stop a long-running command the way Ctrl-C does."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

#: A `kill`, `systemctl stop`, a closed terminal or SSH session.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """In the block, SIGTERM and SIGHUP raise KeyboardInterrupt, so cleanup runs.

    By default they end the process on the spot: no ``finally``, so threads,
    servers and temporary files are left behind. A second signal during the
    cleanup is ignored; the previous handlers come back after the block.
    """
    stopping = False

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
