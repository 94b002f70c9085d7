"""`nilemetrics serve --workers N` as a user runs it: real processes on a real PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import websockets.sync.client as ws_client
from sqlalchemy import select

from nilemetrics.cli.serve import uvicorn_options
from nilemetrics.cli.workers import Supervisor, listen_socket
from nilemetrics.config import Settings
from nilemetrics.server.db import make_engine
from nilemetrics.server.leader import LEADER_LOCK_KEY
from nilemetrics.server.tables import sessions_t
from tests.support import free_port, temporary_pg_database

TOKEN = "workers-test-token-0123"
P = "/api/metrics"


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    """A database of the test's own: no other test's server holds its leader lock."""
    with temporary_pg_database() as url:
        yield url


class Serve:
    """``nilemetrics serve ARGS`` in a session of its own, its output collected as it comes."""

    def __init__(self, tmp_path: Path, *args: str, database_url: str) -> None:
        self.port = free_port()
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nilemetrics", "serve", "--port", str(self.port),
             "--token", TOKEN, *args],
            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "COLUMNS": "300", "NILEMETRICS_DATABASE_URL": database_url,
                 "NILEMETRICS_DATA_DIR": str(tmp_path / "data"),
                 "NILEMETRICS_CONFIG_DIR": str(tmp_path / "config")},
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.port}"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        """Everything printed so far."""
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        """The first output line matching ``pattern``, waiting for it if need be."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if match := re.search(pattern, line):
                    return match
            assert self.proc.poll() is None, f"serve exited:\n{self.output}"
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n{self.output}")

    def workers(self) -> list[int]:
        """The worker pids, once all are ready."""
        match = self.wait_for(r"(\d+) workers ready \(pids ([\d, ]+)\)")
        return [int(pid) for pid in match[2].split(", ")]

    def exit_code(self, timeout: float) -> int:
        """The exit code, once it has exited; what it printed if it does not in time."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            still = sorted(descendants(self.proc.pid))
            raise AssertionError(f"serve still running after {timeout} s (and pids {still}):\n"
                                 f"{self.output}") from None

    def stop(self) -> None:
        """Make sure nothing is left running (the test may have stopped it already)."""
        if self.proc.poll() is None:
            with_children = descendants(self.proc.pid)
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            for pid in with_children:
                _wait_gone(pid, 10)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Serve]]:
    """Start ``serve`` processes; whatever is left of them is killed afterwards."""
    started: list[Serve] = []

    def start(*args: str, database_url: str) -> Serve:
        started.append(Serve(tmp_path, *args, database_url=database_url))
        return started[-1]

    yield start
    for each in started:
        each.stop()


def descendants(pid: int) -> set[int]:
    """The pids of every process below ``pid`` (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # it just exited
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def leader_pid(url: str) -> int | None:
    """The pid of the worker holding the leader lock, from PostgreSQL's own tables."""
    conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND (l.classid::bigint << 32) + l.objid::bigint = %s",
            (LEADER_LOCK_KEY,),
        ).fetchone()
    if row is None:
        return None
    return int(row[0].rsplit(" ", 1)[1])


def wait_leader(url: str, timeout: float, not_pid: int | None = None) -> int:
    """Wait until some worker (other than ``not_pid``) holds the leader lock; its pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = leader_pid(url)
        if pid is not None and pid != not_pid:
            return pid
        time.sleep(0.1)
    raise AssertionError(f"no leader (other than {not_pid}) within {timeout} s")


def post_on_new_connection(base_url: str) -> tuple[str, int]:
    """A page visit for a new session over a connection of its own; (session id, local port)."""
    sid = str(uuid.uuid4())
    with httpx.Client(base_url=base_url, timeout=10) as http:
        response = http.post(f"{P}/track/page-visit",
                             json={"sessionId": sid, "pageType": "homepage"})
        assert response.status_code == 200, response.text
        stream = response.extensions["network_stream"]
        port = stream.get_extra_info("client_addr")[1]
    return sid, int(port)


def worker_of(server: Serve, client_port: int, what: str) -> int:
    """Which worker answered the connection from ``client_port`` (its access log line)."""
    return int(server.wait_for(rf"\[(\d+)\] 127\.0\.0\.1:{client_port} - \"{what}", 10)[1])


@pytest.mark.postgres
def test_two_workers_share_the_port_and_one_leads(serve: Callable[..., Serve],
                                                  pg_url: str) -> None:
    """Both workers answer on one port, both push heartbeats to their own subscribers, and
    only the leader (the lock holder in pg_locks) ends idle sessions; SIGTERM stops all."""
    server = serve("--workers", "2", "--cleanup-interval", "1s", "--session-timeout", "2s",
                   "--log-level", "debug", database_url=pg_url)
    workers = server.workers()
    assert len(set(workers)) == 2
    leader = wait_leader(pg_url, 10)
    assert leader in workers
    running = descendants(server.proc.pid)
    assert set(workers) <= running and len(running) == 4  # each worker has its writer

    answered: dict[int, list[str]] = {}
    for _ in range(64):  # new connections until the kernel gave some to each worker
        sid, port = post_on_new_connection(server.base_url)
        answered.setdefault(worker_of(server, port, "POST /api/metrics/track/page-visit"),
                            []).append(sid)
        if len(answered) == 2 and len(sum(answered.values(), [])) >= 6:
            break
    assert set(answered) == set(workers)
    sessions = set(sum(answered.values(), []))

    subscribers: dict[int, ws_client.ClientConnection] = {}
    with contextlib.ExitStack() as stack:
        for _ in range(64):
            ws = stack.enter_context(
                ws_client.connect(f"ws://127.0.0.1:{server.port}{P}/ws?token={TOKEN}"))
            subscribers.setdefault(
                worker_of(server, ws.socket.getsockname()[1], f"WebSocket {P}/ws"), ws)
            if len(subscribers) == 2:
                break
        assert set(subscribers) == set(workers)
        for pid, ws in subscribers.items():
            deadline = time.monotonic() + 5
            while '"metrics-heartbeat"' not in str(ws.recv(timeout=5)):
                assert time.monotonic() < deadline, f"no heartbeat from worker {pid}"

    engine = make_engine(pg_url)
    try:
        deadline = time.monotonic() + 15
        while True:
            with engine.connect() as conn:
                rows = conn.execute(select(sessions_t.c.session_id, sessions_t.c.is_active)
                                    .where(sessions_t.c.session_id.in_(sessions))).all()
            if len(rows) == len(sessions) and not any(active for _, active in rows):
                break
            assert time.monotonic() < deadline, f"sessions not ended: {rows}"
            time.sleep(0.2)
    finally:
        engine.dispose()
    # A tick a second, in each worker: a second cleaner would have logged its ticks too.
    ticks = re.findall(r"\[(\d+)\] cleanup \(leader, pid (\d+)\): ended (\d+) idle sessions",
                       server.output)
    assert len(ticks) >= 2
    assert {(int(a), int(b)) for a, b, _ in ticks} == {(leader, leader)}
    assert sum(int(n) for _, _, n in ticks) == len(sessions)  # each ended exactly once
    assert f"[{leader}] leadership: this process (pid {leader}) is the leader" in server.output
    assert server.output.count("is the leader;") == 1

    server.proc.send_signal(signal.SIGTERM)
    assert server.exit_code(30) == 0
    assert [pid for pid in running if not _wait_gone(pid, 5)] == []
    assert "Traceback" not in server.output
    assert "shutdown still running" not in server.output  # nothing it waited 10 s for


@pytest.mark.postgres
def test_killed_leader_hands_over_and_is_replaced(serve: Callable[..., Serve],
                                                 pg_url: str) -> None:
    """kill -9 of the leading worker: another process leads within seconds, a new worker
    takes the dead one's place, the port keeps serving; then Ctrl-C (SIGINT to the whole
    process group, as a terminal sends it) stops every process, exit code 0."""
    server = serve("--workers", "2", database_url=pg_url)
    workers = server.workers()
    leader = wait_leader(pg_url, 10)
    writer_of_leader = descendants(leader)
    assert len(writer_of_leader) == 1

    os.kill(leader, signal.SIGKILL)
    killed = time.monotonic()
    successor = wait_leader(pg_url, 10, not_pid=leader)
    handover = time.monotonic() - killed
    assert handover < 8, handover  # the lock is free at once; the next try is within 2 s
    assert all(_wait_gone(pid, 10) for pid in writer_of_leader)  # no orphaned writer
    replaced = server.wait_for(rf"worker pid {leader} was killed by SIGKILL after \d+ s; "
                               "starting a new one")
    assert replaced
    new_worker = int(server.wait_for(r"worker pid (\d+) ready$")[1])
    assert new_worker not in workers
    new_workers = {new_worker}
    assert successor in set(workers) | new_workers
    answered = {worker_of(server, post_on_new_connection(server.base_url)[1],
                          "POST /api/metrics/track/page-visit") for _ in range(10)}
    assert leader not in answered and answered <= set(workers) | new_workers

    running = descendants(server.proc.pid)
    assert len(running) == 4
    os.killpg(server.proc.pid, signal.SIGINT)
    assert server.exit_code(30) == 0
    assert [pid for pid in running if not _wait_gone(pid, 5)] == []
    assert "Traceback" not in server.output
    assert "shutdown still running" not in server.output  # nothing it waited 10 s for
    assert "received SIGINT: stopping 2 workers" in server.output


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--workers", "2"], {},
         "error: --workers 2 needs PostgreSQL: SQLite allows one writing process; pass "
         "--database-url postgresql+psycopg://USER@HOST/DB or use --workers 1"),
        ([], {"NILEMETRICS_WORKERS": "0"},
         "error: invalid setting: workers: Input should be greater than or equal to 1"),
    ],
)
def test_workers_refused_on_sqlite_or_below_one(tmp_path: Path, args: list[str],
                                                env: dict[str, str], message: str) -> None:
    """SQLite with several workers, or fewer than one worker: one line, exit 1, nothing
    started and no database file created."""
    result = subprocess.run(
        [sys.executable, "-m", "nilemetrics", "serve", "--port", str(free_port()), *args],
        capture_output=True, text=True, timeout=30,
        env={**os.environ, "COLUMNS": "300", **env,
             "NILEMETRICS_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}"},
    )
    assert result.returncode == 1
    assert result.stderr.strip() == message
    assert "serving on" not in result.stdout + result.stderr
    assert not (tmp_path / "s.db").exists()


def test_a_worker_that_cannot_start_stops_everything(tmp_path: Path) -> None:
    """A worker whose start fails (here: its database is unreachable) is not restarted in
    a loop: the supervisor stops and says which worker failed and how."""
    settings = Settings(database_url="postgresql+psycopg://postgres@127.0.0.1:1/none",
                        data_dir=tmp_path / "data", config_dir=tmp_path / "config",
                        dashboard_token=[TOKEN], workers=2)
    port = free_port()
    options = uvicorn_options(settings, host="127.0.0.1", port=port, log_level="warning")
    sockets = [listen_socket("127.0.0.1", port)]  # one worker fails like two, in half the time
    failed = Supervisor((settings, options), sockets).run()
    assert failed is not None
    assert re.fullmatch(r"worker pid \d+ exited before it could serve \(exited with code 3\)",
                        failed), failed
    assert all(sock.fileno() == -1 for sock in sockets)  # closed: the port is free again
    listen_socket("127.0.0.1", port).close()
