"""`nilemetrics serve --workers N`: N server processes on one port, and their supervisor.

The supervisor (the ``serve`` process itself, after it has checked the port,
migrated the schema and made sure of the dashboard token) binds one listening
socket per worker with ``SO_REUSEPORT``, so the kernel spreads new connections
evenly over the workers. (One socket shared by all, as uvicorn's ``--workers``
does, lets whichever process wakes first take a whole burst of connections: in
a quick trial with wrk, 64 connections split 45/19 and 46/18.) Each worker is a fresh interpreter
(``python -m nilemetrics.cli.workers PIPE_FD SOCKET_FD``) that gets the
settings over a pipe, never on its command line or in its environment, and
runs the same application and connection limits as a single ``serve``.

The supervisor keeps its copy of every socket. A worker that dies (killed,
crashed) is replaced on the same socket: connections the kernel hands that
socket meanwhile wait in its backlog instead of being refused. A worker that
exits before it could serve is fatal (the next one would fail the same way):
everything is stopped.

SIGTERM, SIGINT (Ctrl-C) and SIGHUP stop all workers gracefully (uvicorn's own
shutdown; each stops its writer process), then the supervisor exits. A worker
still running after ``STOP_GRACE`` seconds is killed. A worker whose supervisor
vanished (even by SIGKILL) notices its pipe closing and shuts down too.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

#: Seconds workers get to finish their requests and stop before they are killed.
STOP_GRACE = 30.0

#: uvicorn's default listen backlog.
BACKLOG = 2048


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` that other such sockets may share."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


@dataclass(eq=False)
class _Worker:
    """One worker process, its pipe and its socket."""

    slot: int
    sock: socket.socket
    proc: subprocess.Popen[bytes]
    pipe: Connection
    ready: bool = False
    pipe_open: bool = True
    started: float = field(default_factory=time.monotonic)


class Supervisor:
    """Starts, watches, replaces and stops the worker processes."""

    def __init__(self, payload: Any, sockets: list[socket.socket]) -> None:
        self._payload = payload
        self._sockets = sockets
        self._workers: list[_Worker] = []
        self._stopping = False
        self._failed: str | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._announced = False

    def run(self) -> str | None:
        """Run until a stop signal (``None``) or a fatal worker failure (its description)."""
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        previous_fd = signal.set_wakeup_fd(self._wake_w.fileno())
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        try:
            self._workers = [self._start(slot, sock) for slot, sock in enumerate(self._sockets)]
            while not self._stopping:
                self._step()
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_fd)
            self._wake_r.close()
            self._wake_w.close()
        return self._failed

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self._stopping:
            log.info("received %s: stopping %d workers", signal.Signals(signum).name,
                     len(self._workers))
        self._stopping = True

    def _start(self, slot: int, sock: socket.socket) -> _Worker:
        ours, theirs = socket.socketpair()
        proc = subprocess.Popen(
            [sys.executable, "-m", "nilemetrics.cli.workers", str(theirs.fileno()),
             str(sock.fileno())],
            pass_fds=(theirs.fileno(), sock.fileno()),
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        pipe = Connection(ours.detach())
        try:
            pipe.send(self._payload)
        except OSError:
            pass  # it died at once: seen as an exit before ready
        return _Worker(slot=slot, sock=sock, proc=proc, pipe=pipe)

    def _step(self) -> None:
        watched: list[Any] = [w.pipe for w in self._workers if w.pipe_open]
        readable = wait([*watched, self._wake_r], timeout=1.0)
        if self._wake_r in readable:
            try:
                while self._wake_r.recv(512):
                    pass
            except BlockingIOError:
                pass
        for worker in self._workers:
            if worker.pipe_open and worker.pipe in readable:
                try:
                    if worker.pipe.recv() == "ready":
                        worker.ready = True
                        if self._announced:  # a replacement
                            log.info("worker pid %d ready", worker.proc.pid)
                except (EOFError, OSError):
                    worker.pipe_open = False  # it is exiting; poll() below tells how
        if not self._announced and all(w.ready for w in self._workers):
            self._announced = True
            log.info("%d workers ready (pids %s)", len(self._workers),
                     ", ".join(str(w.proc.pid) for w in self._workers))
        for index, worker in enumerate(self._workers):
            code = worker.proc.poll()
            if code is None or self._stopping:
                continue
            how = _exit_description(code)
            worker.pipe.close()
            if not worker.ready:
                self._failed = f"worker pid {worker.proc.pid} exited before it could serve ({how})"
                log.error("%s; stopping", self._failed)
                self._stopping = True
                return
            log.warning("worker pid %d %s after %.0f s; starting a new one",
                        worker.proc.pid, how, time.monotonic() - worker.started)
            self._workers[index] = self._start(worker.slot, worker.sock)

    def _stop_all(self) -> None:
        # New connections must not queue on sockets nobody will accept from any more.
        for sock in self._sockets:
            sock.close()
        for worker in self._workers:
            if worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for worker in self._workers:
            try:
                worker.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d still running after %g s; killing it",
                            worker.proc.pid, STOP_GRACE)
                worker.proc.kill()
                worker.proc.wait()
            worker.pipe.close()


def _exit_description(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def _watch_supervisor(pipe: Connection) -> None:
    """Shut this worker down when its supervisor's end of the pipe closes."""
    try:
        while True:
            pipe.recv()
    except (EOFError, OSError):
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def _worker_main() -> None:
    """``python -m nilemetrics.cli.workers PIPE_FD SOCKET_FD``: one worker process."""
    # A closed terminal stops the supervisor, which stops this worker gracefully.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    pipe = Connection(int(sys.argv[1]))
    sock = socket.socket(fileno=int(sys.argv[2]))
    try:
        settings, options = pipe.recv()
    except (EOFError, OSError):
        return  # the supervisor is gone already

    import uvicorn

    from nilemetrics.server.app import create_app

    class WorkerServer(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if not self.should_exit:
                pipe.send("ready")

    threading.Thread(target=_watch_supervisor, args=(pipe,), daemon=True,
                     name="nm-supervisor-watch").start()
    config = uvicorn.Config(create_app(settings), **options)
    try:
        WorkerServer(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the SIGINT it shut down on; the shutdown is done


if __name__ == "__main__":
    _worker_main()
