"""`nilemetrics serve` and `init-db` as a user runs them: output, exit codes, effects."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import websockets.sync.client as ws_client

from nilemetrics.server.db import current_revision, head_revision, make_engine
from tests.support import free_port

CLI = [sys.executable, "-m", "nilemetrics"]


def run_cli(*args: str, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a subprocess with the test's environment."""
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_module_entry_point_lists_commands() -> None:
    """`python -m nilemetrics --help` works like `nilemetrics` and lists the commands."""
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("serve", "init-db"):
        assert command in result.stdout
    version = run_cli("--version")
    assert version.stdout.strip() == "nilemetrics 0.1.0"


def test_init_db_creates_then_is_idempotent(database_url: str) -> None:
    """init-db creates the schema, and a second run says it is up to date."""
    first = run_cli("init-db", "--database-url", database_url)
    assert first.returncode == 0, first.stderr
    assert f"revision {head_revision()}" in first.stderr
    second = run_cli("init-db", "--database-url", database_url)
    assert second.returncode == 0, second.stderr
    assert second.stderr.strip() == (
        f"schema of {database_url} is up to date (revision {head_revision()})"
    )
    engine = make_engine(database_url)
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_init_db_default_is_sqlite_in_data_dir(tmp_path: Path) -> None:
    """Without a URL the database is a SQLite file in the user's data directory."""
    result = run_cli("init-db")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "nilemetrics.db").exists()
    assert "created schema revision" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["init-db", "--database-url", "mysql://db/shop"],
         "error: cannot set up mysql://db/shop: unsupported database 'mysql': use "
         "sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"),
        (["init-db", "--database-url", "postgresql://postgres:secret@127.0.0.1:1/x"],
         "error: cannot set up postgresql+psycopg://postgres:***@127.0.0.1:1/x: connection"),
        (["serve", "--live-window", "3x"],
         "error: invalid setting: live_window: invalid duration '3x': use a number of "
         "seconds or forms like 90s, 30m, 1h30m, 7d"),
        (["serve", "--log-level", "loud"],
         "error: --log-level: unknown level 'loud'; use one of critical, error, warning, "
         "info, debug, trace"),
        (["serve", "--ip-storage", "some"],
         "error: invalid setting: ip_storage: Input should be 'full', 'anonymized' or 'none'"),
        (["serve", "--allowed-origin", "shop.example"],
         "error: invalid setting: allowed_origins: origin 'shop.example' must start with "
         "http:// or https://"),
    ],
)
def test_bad_input_is_one_clear_line(args: list[str], message: str) -> None:
    """Bad URLs, unreachable databases and bad settings: one line, exit 1, no traceback."""
    result = run_cli(*args)
    assert result.returncode == 1
    assert result.stderr.startswith(message), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "secret" not in result.stderr


def test_serve_generates_token_once_and_never_logs_it(tmp_path: Path) -> None:
    """First start prints and stores a token (0600); it works; it is not in the logs."""
    port = free_port()
    env = {"NILEMETRICS_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}"}

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen([*CLI, "serve", "--port", str(port)], text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env={**os.environ, **env})

    def wait_up() -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                return
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)

    proc = start()
    try:
        wait_up()
        token_file = tmp_path / "config" / "dashboard-token"
        token = token_file.read_text().strip()
        assert (token_file.stat().st_mode & 0o777) == 0o600
        ok = httpx.get(f"http://127.0.0.1:{port}/api/metrics/live-metrics",
                       headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
        with ws_client.connect(f"ws://127.0.0.1:{port}/api/metrics/ws?token={token}") as ws:
            assert '"event"' in str(ws.recv(timeout=5))
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert "Generated a dashboard token" in output
    assert output.count(token) == 1  # printed once, at generation, never in a log line
    assert "token=***" in output  # the WebSocket access line, redacted

    again = start()
    try:
        wait_up()
    finally:
        again.terminate()
        output = again.communicate(timeout=30)[0]
    assert "Generated a dashboard token" not in output
    assert token not in output
