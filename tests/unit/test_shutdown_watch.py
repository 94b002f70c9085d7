"""A shutdown that takes long logs the step it is at and what its tasks and threads wait for."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from nilemetrics.server.shutdown import ShutdownWatch


async def _stuck_inner(never: asyncio.Event) -> None:
    await never.wait()


async def _stuck_outer(never: asyncio.Event) -> None:
    await _stuck_inner(never)


async def test_a_long_step_is_reported_with_where_each_task_and_thread_waits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    never = asyncio.Event()
    stuck = asyncio.create_task(_stuck_outer(never), name="nm-stuck")
    release = threading.Event()
    blocked = threading.Thread(target=release.wait, name="nm-blocked-thread", daemon=True)
    blocked.start()
    caplog.set_level(logging.WARNING, logger="nilemetrics.server.shutdown")
    try:
        with ShutdownWatch(report_after=0.2) as watch:
            watch.at("stopping nm-stuck")
            await asyncio.sleep(0.6)
    finally:
        release.set()
        stuck.cancel()
    [report] = [r.getMessage() for r in caplog.records]
    first, *rest = report.splitlines()
    assert first == "shutdown still running after 0.2 s, at: stopping nm-stuck"
    [task_line] = [line for line in rest if line.startswith("task nm-stuck:")]
    assert "_stuck_outer (test_shutdown_watch.py:" in task_line
    assert "> _stuck_inner (test_shutdown_watch.py:" in task_line
    assert "> wait (locks.py:" in task_line
    assert "thread nm-blocked-thread:" in rest


async def test_a_quick_shutdown_reports_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="nilemetrics.server.shutdown")
    with ShutdownWatch(report_after=0.2) as watch:
        watch.at("stopping the hub")
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.4)
    assert caplog.records == []
