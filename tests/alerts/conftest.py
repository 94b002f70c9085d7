"""Alert tests: a real HTTP receiver (Apprise json://), a real SMTP server, rules files."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from nilemetrics.config import Settings
from tests.support import free_port

#: Evaluation interval of the servers in these tests (the default is 5 s).
INTERVAL = 0.2


@dataclass
class Received:
    """One notification as the receiver got it."""

    path: str
    body: dict[str, Any]

    @property
    def title(self) -> str:
        """Apprise's ``title`` field."""
        return str(self.body.get("title", ""))

    @property
    def message(self) -> str:
        """Apprise's ``message`` field."""
        return str(self.body.get("message", ""))


@dataclass
class Receiver:
    """An HTTP server that takes Apprise's json:// POSTs; it can refuse the first few."""

    port: int
    received: list[Received] = field(default_factory=list)
    attempts: int = 0
    fail_next: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        """The Apprise URL of this receiver."""
        return f"json://127.0.0.1:{self.port}/hook"

    def titles(self) -> list[str]:
        """Titles of the notifications accepted so far, in order."""
        with self.lock:
            return [item.title for item in self.received]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until ``count`` notifications were accepted; return them all."""
        wait_until(lambda: len(self.received) >= count, timeout,
                   lambda: f"{len(self.received)} of {count} notifications: {self.titles()}")
        with self.lock:
            return list(self.received)

    def wait_attempts(self, count: int, timeout: float = 10.0) -> None:
        """Wait until ``count`` POSTs arrived, accepted or not."""
        wait_until(lambda: self.attempts >= count, timeout,
                   lambda: f"{self.attempts} of {count} attempts")


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0,
               describe: Callable[[], str] | None = None) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds saying what was seen."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {describe() if describe else predicate}")
        time.sleep(0.05)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP receiver on a free port, for the whole test."""
    state = Receiver(port=free_port())

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            raw = self.rfile.read(length)
            with state.lock:
                state.attempts += 1
                refuse = state.fail_next > 0
                if refuse:
                    state.fail_next -= 1
                else:
                    state.received.append(Received(self.path, json.loads(raw)))
            self.send_response(503 if refuse else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", state.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@dataclass
class Mailbox:
    """What the SMTP server received."""

    port: int
    messages: list[Any] = field(default_factory=list)

    def url(self, to: str = "ops@shop.test") -> str:
        """An Apprise mailto:// URL for this server (plain SMTP, no login)."""
        return f"mailto://127.0.0.1:{self.port}?from=alerts@shop.test&to={to}"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    """A real SMTP server (aiosmtpd) on a free port."""
    box = Mailbox(port=free_port())

    class Handler:
        async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
            box.messages.append(envelope)
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=box.port)
    controller.start()
    yield box
    controller.stop()


def rules_file(path: Path, rules: str, notify: str) -> Path:
    """Write a rules file with one ``[[notify]]`` block per line of ``notify`` (name=url)."""
    blocks = []
    for line in notify.strip().splitlines():
        name, url = line.split("=", 1)
        blocks.append(f'[[notify]]\nname = "{name.strip()}"\nurl = "{url.strip()}"\n')
    path.write_text("\n".join(blocks) + "\n" + rules.strip() + "\n")
    return path


def with_alerts(settings: Settings, path: Path) -> Settings:
    """The test settings with this rules file and the fast evaluation interval."""
    return settings.model_copy(update={"alerts": path, "alerts_interval": INTERVAL})
