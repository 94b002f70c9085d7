"""A disk that stops answering under `nilemetrics serve`: quick 503s, no late writes.

Puts the SQLite database on a small ext4 file system of its own (a loop device),
sends page visits from 16 clients, freezes the file system (``fsfreeze -f``: every
write to it blocks, as with a hung disk or a stalled network volume) for
``--freeze`` seconds, then thaws it. It records, per phase, the answers and their
latency, the server's peak memory, how long after the thaw the first 2xx came, and
then checks in the database that every event answered 200 is stored and none
answered 503 was written afterwards.

    sudo python -m benchmarks.hung_disk [--freeze 15] [--clients 16]

Needs root (mount, fsfreeze), a free loop device, mkfs.ext4. Loopback only; at most
60 s frozen; it stops (and thaws and unmounts) by itself. Writes results/hung_disk.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).parent
TOKEN = "benchmark-token-0123456789"


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def small_disk(root: Path, megabytes: int = 64) -> Iterator[Path]:
    """An ext4 file system on a loop device, mounted for the block (thawed on the way out)."""
    image, mount = root / "disk.img", root / "mnt"
    mount.mkdir()
    with image.open("wb") as f:
        f.truncate(megabytes * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["fsfreeze", "-u", str(mount)], capture_output=True)
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@contextlib.contextmanager
def server(db: Path, root: Path) -> Iterator[tuple[str, int]]:
    """`nilemetrics serve` on the database ``db``; yields its base URL and pid."""
    port = free_port()
    env = {
        **os.environ,
        "NILEMETRICS_DATABASE_URL": f"sqlite:///{db}",
        "NILEMETRICS_DATA_DIR": str(root / "data"),
        "NILEMETRICS_CONFIG_DIR": str(root / "config"),
        "NILEMETRICS_DASHBOARD_TOKEN": TOKEN,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "nilemetrics", "serve", "--host", "127.0.0.1", "--port",
         str(port), "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError("server exited at start")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.2)
        yield base, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB (0 if gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass
class Phase:
    """Answers of one phase: status → latencies (s), and the session ids per status."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    ids: dict[str, list[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: str, seconds: float, sid: str) -> None:
        """Record one answer."""
        with self.lock:
            self.latencies.setdefault(status, []).append(seconds)
            self.ids.setdefault(status, []).append(sid)

    def summary(self) -> dict[str, Any]:
        """Count, median and worst latency per status."""
        return {
            status: {"count": len(values), "p50_ms": round(statistics.median(values) * 1000, 1),
                     "max_ms": round(max(values) * 1000, 1)}
            for status, values in sorted(self.latencies.items())
        }


def load(base: str, record: Callable[[str, float, str], None], stop: threading.Event,
         clients: int) -> None:
    """Page visits from ``clients`` threads until ``stop`` (each a new session)."""

    def client() -> None:
        with httpx.Client(base_url=base, timeout=30) as http:
            while not stop.is_set():
                sid = str(uuid.uuid4())
                began = time.monotonic()
                try:
                    status = str(http.post("/api/metrics/track/page-visit",
                                           json={"sessionId": sid, "pageType": "homepage"})
                                 .status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                record(status, time.monotonic() - began, sid)

    with ThreadPoolExecutor(clients) as pool:
        for _ in range(clients):
            pool.submit(client)


def main() -> None:
    """Run the freeze and write results/hung_disk.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--freeze", type=float, default=15.0, help="seconds frozen (max 60)")
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    freeze = min(max(args.freeze, 1.0), 60.0)
    if os.geteuid() != 0:
        sys.exit("hung_disk needs root (mount, fsfreeze)")
    result: dict[str, Any] = {
        "machine": f"{platform.node()} ({os.cpu_count()} cores)",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "freeze_seconds": freeze, "clients": args.clients,
    }
    with tempfile.TemporaryDirectory(prefix="nm-hung-") as tmp:
        root = Path(tmp)
        with small_disk(root) as mount:
            db = mount / "metrics.db"
            with server(db, root) as (base, pid):
                phases = {name: Phase() for name in ("before", "frozen", "after")}
                peak = {"before": rss_mb(pid), "frozen": 0.0, "after": 0.0}
                stop = threading.Event()
                current = {"name": "before"}

                def record(status: str, seconds: float, sid: str) -> None:
                    phases[current["name"]].add(status, seconds, sid)

                def sample() -> None:
                    while not stop.is_set():
                        name = current["name"]
                        peak[name] = max(peak[name], rss_mb(pid))
                        time.sleep(0.2)

                threading.Thread(target=sample, daemon=True).start()
                loader = threading.Thread(target=load, args=(base, record, stop, args.clients))
                loader.start()
                time.sleep(5)
                current["name"] = "frozen"
                subprocess.run(["fsfreeze", "-f", str(mount)], check=True)
                frozen_at = time.monotonic()
                time.sleep(freeze)
                current["name"] = "after"
                subprocess.run(["fsfreeze", "-u", str(mount)], check=True)
                thawed_at = time.monotonic()
                first_ok: float | None = None
                while time.monotonic() - thawed_at < 30:
                    with contextlib.suppress(httpx.HTTPError):
                        answer = httpx.post(f"{base}/api/metrics/track/page-visit", timeout=10,
                                            json={"sessionId": str(uuid.uuid4()),
                                                  "pageType": "homepage"})
                        if answer.status_code == 200:
                            first_ok = time.monotonic() - thawed_at
                            break
                    time.sleep(0.05)
                time.sleep(3)
                stop.set()
                loader.join(60)
                result["frozen_for_seconds"] = round(thawed_at - frozen_at, 1)
                result["first_2xx_after_thaw_seconds"] = (
                    None if first_ok is None else round(first_ok, 2))
                result["phases"] = {name: phase.summary() for name, phase in phases.items()}
                result["server_rss_mb_peak"] = {k: round(v, 1) for k, v in peak.items()}
            with sqlite3.connect(db) as conn:
                stored = {row[0] for row in conn.execute("SELECT session_id FROM page_visits")}
            acknowledged = [s for p in phases.values() for s in p.ids.get("200", [])]
            refused = [s for p in phases.values() for s in p.ids.get("503", [])]
            result["acknowledged"] = len(acknowledged)
            result["acknowledged_missing"] = sum(1 for s in acknowledged if s not in stored)
            result["answered_503"] = len(refused)
            result["answered_503_but_stored"] = sum(1 for s in refused if s in stored)
    out = HERE / "results" / "hung_disk.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
