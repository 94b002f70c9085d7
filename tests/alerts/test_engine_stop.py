"""The alert engine stops when told, whatever its loops were doing at that moment."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nilemetrics.server.alerts.engine import AlertEngine
from nilemetrics.server.alerts.rules import load_rules
from nilemetrics.server.db import make_engine, migrate
from tests.alerts.conftest import rules_file
from tests.alerts.test_notifications import ERRORS_RULE
from tests.support import FakeClock


@pytest.mark.parametrize("steps", range(4))
async def test_stop_ends_the_loops_even_as_a_delivery_wakes(tmp_path: Path, steps: int) -> None:
    """The delivery loop woken just before stop(): stop() returns all the same.

    On Python 3.11 ``asyncio.wait_for`` lost a cancellation that met the wake-up
    it was waiting for; the loop then waited its whole interval again, and again.
    """
    engine = make_engine(f"sqlite:///{tmp_path / 'nm.db'}")
    migrate(engine)
    config = load_rules(rules_file(tmp_path / "alerts.toml", ERRORS_RULE,
                                   "ops = json://127.0.0.1:9/hook"))
    alerts = AlertEngine(config, engine, FakeClock(), live_window=300, interval=60,
                         send=lambda *_args: None)
    await alerts.start()
    try:
        await asyncio.sleep(0.2)  # both loops are waiting now
        alerts._wake.set()
        for _ in range(steps):
            await asyncio.sleep(0)
        stopping = asyncio.ensure_future(alerts.stop())
        done, _ = await asyncio.wait({stopping}, timeout=5)
        assert stopping in done, "the alert engine's loops ran on after stop()"
    finally:
        engine.dispose()
