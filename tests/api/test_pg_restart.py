"""PostgreSQL restarted under a running server, on a throwaway cluster the test starts."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from nilemetrics.config import Settings
from nilemetrics.server.db import make_engine
from nilemetrics.server.tables import visits_t
from tests.conftest import TEST_TOKEN
from tests.support import FakeClock, free_port, run_server

pytestmark = pytest.mark.postgres

P = "/api/metrics"


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


@dataclass
class Cluster:
    """A PostgreSQL cluster of the test's own: its URL, and how to restart it."""

    url: str
    bin: Path
    data: Path
    options: str
    log: Path

    def ctl(self, *args: str) -> None:
        """Run pg_ctl on this cluster (as the postgres user when we are root)."""
        _run([str(self.bin / "pg_ctl"), "-D", str(self.data), *args])

    def start(self) -> None:
        """Start the server (again) on its port."""
        self.ctl("-o", self.options, "-l", str(self.log), "-w", "start")


def _as_postgres(cmd: list[str]) -> list[str]:
    # initdb and the server refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str]) -> None:
    # No pipes: the server pg_ctl starts would inherit them and keep them open.
    subprocess.run(_as_postgres(cmd), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=60)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """initdb + pg_ctl start on a free port; stopped and removed afterwards."""
    pg_bin = _pg_bin()
    if pg_bin is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server binaries (/usr/lib/postgresql/*/bin) are required in CI")
        pytest.skip("PostgreSQL server binaries not installed (/usr/lib/postgresql/*/bin)")
    root = Path(tempfile.mkdtemp(prefix="nm-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    _run([str(pg_bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
          "--no-sync"])
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    found = Cluster(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", pg_bin, data,
                    options, root / "server.log")
    found.start()
    try:
        yield found
    finally:
        try:
            found.ctl("-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(root, ignore_errors=True)


def test_postgres_restart_loses_nothing_acknowledged(
    cluster: Cluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A fast restart of PostgreSQL mid-traffic: answers are 200 or 503 (never a hang or
    a 500), ingestion comes back by itself, every event answered 200 is stored, and the
    server, which lost its leadership with its connection, leads again."""
    settings = Settings(
        database_url=cluster.url, data_dir=tmp_path / "data", config_dir=tmp_path / "config",
        dashboard_token=[TEST_TOKEN], cleanup_interval=3600, push_interval=0.05,
        refresh_interval=0.5,
    )
    acknowledged: list[str] = []
    statuses: list[int] = []
    with run_server(settings, FakeClock()) as server, httpx.Client(
        base_url=server.base_url, timeout=20
    ) as http:

        def visit() -> int:
            sid = str(uuid.uuid4())
            response = http.post(f"{P}/track/page-visit",
                                 json={"sessionId": sid, "pageType": "homepage"})
            statuses.append(response.status_code)
            if response.status_code == 200:
                acknowledged.append(sid)
            return response.status_code

        leadership = server.server.config.app.state.leader  # type: ignore[union-attr]
        assert [visit() for _ in range(20)] == [200] * 20
        assert leadership.is_leader()
        restart = subprocess.Popen(
            _as_postgres([str(cluster.bin / "pg_ctl"), "-D", str(cluster.data), "-m", "fast",
                          "-w", "restart"]),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        while restart.poll() is None:  # traffic while it goes down and comes back
            visit()
            time.sleep(0.02)
        assert restart.returncode == 0
        deadline = time.monotonic() + 30
        recovered = 0
        while recovered < 20 and time.monotonic() < deadline:
            recovered = recovered + 1 if visit() == 200 else 0
            time.sleep(0.05)
        assert recovered == 20, statuses[-40:]
        live = http.get(f"{P}/live-metrics", headers=server.auth)
        assert live.status_code == 200
        # Its next ping (every 2 s) finds the connection gone; the next try leads again.
        deadline = time.monotonic() + 15
        while "is no longer the leader" not in caplog.text:
            assert time.monotonic() < deadline, "did not notice the restart"
            time.sleep(0.05)
        while not leadership.is_leader():
            assert time.monotonic() < deadline, "did not lead again"
            time.sleep(0.05)
    assert set(statuses) <= {200, 503}
    assert 503 in statuses  # the traffic did meet the restart
    engine = make_engine(cluster.url)
    with engine.connect() as conn:
        stored = set(conn.execute(select(visits_t.c.session_id)).scalars())
        total = conn.execute(select(func.count()).select_from(visits_t)).scalar_one()
    engine.dispose()
    assert set(acknowledged) <= stored
    assert total >= len(acknowledged) >= 40

