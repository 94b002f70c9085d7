"""The writer process: replaced when it dies, gone when the server stops."""

from __future__ import annotations

import os
import uuid

import httpx
import pytest

from nilemetrics.config import Settings
from tests.api.journeys import P, metrics
from tests.support import FakeClock, LiveServer, run_server


def _writer_pid(server: LiveServer) -> int:
    proc = server.state.writer._process._proc
    assert proc is not None
    return int(proc.pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return os.path.exists(f"/proc/{pid}") and "Z" not in open(f"/proc/{pid}/stat").read().split()[2]


def test_killed_writer_is_replaced(server: LiveServer, client: httpx.Client) -> None:
    """A writer process that died is started again; events keep being stored."""
    first = _writer_pid(server)
    client.post(f"{P}/track/page-visit", json={"sessionId": str(uuid.uuid4()),
                                               "pageType": "homepage"})
    server.state.writer._process._proc.kill()
    server.state.writer._process._proc.wait(5)
    response = client.post(f"{P}/track/page-visit",
                           json={"sessionId": str(uuid.uuid4()), "pageType": "search"})
    assert response.status_code == 200, response.text
    assert _writer_pid(server) != first
    m = metrics(client, server.auth)
    assert (m["homepage"], m["search"]) == (1, 1)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_writer_process_ends_with_the_server(settings: Settings) -> None:
    """Stopping the server stops its writer process: nothing is left running."""
    with run_server(settings, FakeClock()) as live:
        pid = _writer_pid(live)
        assert _alive(pid)
    assert not _alive(pid)
