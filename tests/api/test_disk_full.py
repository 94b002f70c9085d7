"""SQLite on a small disk: the WAL never wedges it; a full disk is a 503 that says so."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from nilemetrics.config import Settings
from nilemetrics.server.db import make_engine
from nilemetrics.server.tables import visits_t
from tests.api.journeys import P
from tests.support import FakeClock, run_server

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@contextlib.contextmanager
def small_disk(path: Path, size: str = "8m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (skips the test where mounting is not allowed)."""
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _batch() -> dict[str, object]:
    return {"events": [
        {"type": "page-visit", "sessionId": str(uuid.uuid4()), "pageType": "homepage",
         "pageUrl": "https://shop.test/" + "x" * 1500}
        for _ in range(10)
    ]}


def _stored_visits(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(visits_t)).scalar_one())
    finally:
        engine.dispose()


def test_full_disk_is_a_named_503_and_a_restart_accepts_again_after_room_is_made(
    settings: Settings, tmp_path: Path
) -> None:
    """An 8 MB disk fills with data, not WAL; 503 names it; with room again, events go in."""
    with small_disk(tmp_path / "small") as disk:
        ballast = disk / "ballast"
        ballast.write_bytes(b"\0" * 1024 * 1024)
        url = f"sqlite:///{disk / 'metrics.db'}"
        settings = settings.model_copy(update={"database_url": url})
        accepted = 0
        with run_server(settings, FakeClock()) as live, \
                httpx.Client(base_url=live.base_url, timeout=30) as http:
            for _ in range(2000):
                response = http.post(f"{P}/events", json=_batch())
                if response.status_code != 200:
                    break
                accepted += 10
            assert response.status_code == 503
            assert response.json() == {
                "detail": "database disk full; nothing was stored, retry later"
            }
            assert response.headers["retry-after"] == "30"
            # Before, the WAL filled a whole 8 MB disk after 650 of these events.
            assert accepted > 2000, accepted
        assert _stored_visits(url) == accepted  # nothing of the refused batch
        ballast.unlink()
        with run_server(settings, FakeClock()) as live, \
                httpx.Client(base_url=live.base_url, timeout=30) as http:
            again = http.post(f"{P}/events", json=_batch())
            assert (again.status_code, again.json()) == (
                200, {"success": True, "accepted": 10, "duplicates": 0}
            )
        assert _stored_visits(url) == accepted + 10
