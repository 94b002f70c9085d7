"""Leadership: one process of all those on a database runs the shared jobs."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import httpx
import pytest
import websockets
from sqlalchemy import select
from sqlalchemy.engine import make_url

from nilemetrics.config import Settings
from nilemetrics.server.db import make_engine
from nilemetrics.server.leader import Leadership
from nilemetrics.server.tables import live_metrics_t
from tests.api.test_websocket import recv_until
from tests.support import FakeClock, LiveServer, TcpProxy, run_server

P = "/api/metrics"


async def eventually(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Wait until ``condition()`` holds; the seconds it took."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


@contextlib.asynccontextmanager
async def running(leadership: Leadership) -> AsyncIterator[asyncio.Task[None]]:
    """``leadership.run()`` as a task for the block, cancelled afterwards."""
    task = asyncio.create_task(leadership.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_sqlite_process_is_always_the_leader() -> None:
    """Without PostgreSQL the one process leads from the start: its elected job runs once,
    its periodic jobs run every tick."""
    leadership = Leadership(None)
    elected: list[str] = []
    ticks: list[float] = []

    async def on_elected() -> None:
        elected.append("elected")

    async def tick() -> None:
        ticks.append(time.monotonic())

    leadership.on_elected(on_elected)
    async with running(leadership):
        await asyncio.wait_for(leadership.wait_until_leader(), 1)
        periodic = asyncio.create_task(leadership.periodic(0.05, tick, name="test job"))
        await eventually(lambda: len(ticks) >= 3, 2, "three ticks")
        periodic.cancel()
        assert leadership.database_reachable()
    assert elected == ["elected"]
    assert not leadership.is_leader()  # stopped


@pytest.mark.postgres
async def test_one_of_two_leads_and_the_other_takes_over(pg_database: str) -> None:
    """Two processes' leaderships: one leads, only its periodic job runs; once it stops,
    the other leads within the check interval and its job runs instead."""
    first, second = (Leadership(pg_database, check_interval=0.2) for _ in range(2))
    runs = {"first": 0, "second": 0}

    def job(name: str) -> Callable[[], asyncio.Future[None]]:
        async def count() -> None:
            runs[name] += 1
        return count  # type: ignore[return-value]

    async with running(second) as second_task:
        await eventually(second.is_leader, 5, "second leads")
        async with running(first):
            await asyncio.sleep(0.5)  # the first tried twice meanwhile
            assert not first.is_leader() and first.database_reachable()
            jobs = [asyncio.create_task(each.periodic(0.05, job(name), name=name))
                    for each, name in ((first, "first"), (second, "second"))]
            await eventually(lambda: runs["second"] >= 3, 2, "the leader's job runs")
            assert runs["first"] == 0
            second_task.cancel()
            took = await eventually(first.is_leader, 3, "first takes over")
            assert took < 1.0  # check interval 0.2 s
            before = runs["first"]
            await eventually(lambda: runs["first"] >= before + 3, 2, "the new leader's job")
            for each in jobs:
                each.cancel()


@pytest.mark.postgres
async def test_losing_the_database_loses_leadership_without_crashing(pg_database: str) -> None:
    """The leader's database connection cut: it steps down (no exception, its task keeps
    running), a process still connected takes over, and once the database is reachable
    again the first one is back, as a follower."""
    url = make_url(pg_database)
    proxy = TcpProxy(url.port or 5432)
    proxy.start()
    try:
        through_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False)
        cut_off = Leadership(through_proxy, check_interval=0.2, timeout=1.0)
        direct = Leadership(pg_database, check_interval=0.2)
        async with running(cut_off) as cut_task:
            await eventually(cut_off.is_leader, 5, "the proxied one leads")
            async with running(direct):
                await asyncio.sleep(0.5)
                assert not direct.is_leader()
                proxy.stop()
                await eventually(lambda: not cut_off.is_leader(), 3, "steps down")
                await eventually(direct.is_leader, 3, "the connected one takes over")
                await asyncio.sleep(0.5)  # a few failed retries
                assert not cut_off.database_reachable()
                assert not cut_task.done()
                proxy.start()  # the database is back (same port)
                await eventually(cut_off.database_reachable, 5, "reconnected")
                assert not cut_off.is_leader() and direct.is_leader()
            # The connected one stopped: the reconnected one leads again.
            await eventually(cut_off.is_leader, 3, "leads again")
    finally:
        proxy.stop()


def _leader(server: LiveServer) -> Leadership:
    leadership: Leadership = server.server.config.app.state.leader  # type: ignore[union-attr]
    return leadership


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_only_the_leader_stores_snapshots_and_everyone_beats(settings: Settings) -> None:
    """Two servers on one database: the live_metrics snapshot is written by the leader
    only; the other one's subscribers still get heartbeats; when the leader stops, the
    other stores a fresh snapshot as soon as it takes over."""
    # The writer in a thread: these servers start faster, and it is not what is tested.
    beating = settings.model_copy(update={"cleanup_interval": 1.0, "writer_process": False})
    clock_a = FakeClock()
    clock_b = FakeClock(clock_a.now() + timedelta(hours=1))  # tells whose writes they are
    engine = make_engine(settings.effective_database_url())

    def stored_at() -> set[object]:
        with engine.connect() as conn:
            return set(conn.execute(select(live_metrics_t.c.last_updated)).scalars())

    try:
        with run_server(beating, clock_a) as a:
            await eventually(_leader(a).is_leader, 5, "a leads")
            with run_server(beating, clock_b) as b:
                await asyncio.sleep(0.3)
                assert not _leader(b).is_leader()
                async with websockets.connect(f"{b.ws_url}?token={b.token}") as ws, \
                        httpx.AsyncClient(base_url=a.base_url) as http:
                    for page in ("homepage", "checkout", "payment"):
                        response = await http.post(
                            f"{P}/track/page-visit",
                            json={"sessionId": str(uuid.uuid4()), "pageType": page})
                        assert response.status_code == 200
                        await asyncio.sleep(0.3)  # each change reaches both hubs
                    beat = await recv_until(ws, lambda f: f["event"] == "metrics-heartbeat",
                                            timeout=3)
                    assert beat["data"]["intervalSeconds"] == 1.0
                assert stored_at() == {clock_a.now()}
                clock_a.advance(1)  # nothing a stores from now on has b's time either
                a.server.should_exit = True  # a stops: b takes over and stores at once
                await eventually(_leader(b).is_leader, 5, "b takes over")
                await eventually(lambda: stored_at() == {clock_b.now()}, 5, "b's snapshot")
    finally:
        engine.dispose()
