"""The FastAPI application factory: ``create_app(settings) -> FastAPI``."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.telemetry import TelemetryConfig
from sqlalchemy.exc import DBAPIError
from starlette.types import ASGIApp, Receive, Scope, Send

from nilemetrics import __version__
from nilemetrics.config import Settings, ensure_dashboard_tokens
from nilemetrics.protocol.names import API_PREFIX, SOCKETIO_PATH
from nilemetrics.protocol.pushed import LiveMetrics
from nilemetrics.server.alerts.engine import alert_engine_for
from nilemetrics.server.clock import Clock, SystemClock
from nilemetrics.server.db import (
    DatabaseUnavailable,
    describe_db_error,
    make_engine,
    migrate,
)
from nilemetrics.server.hub import Hub
from nilemetrics.server.ingestion.errors import ClientOverShare, EventRejected, StorageFull
from nilemetrics.server.ingestion.events import BatchOutcome
from nilemetrics.server.ingestion.fair_queue import client_of
from nilemetrics.server.ingestion.writer import GroupCommitWriter
from nilemetrics.server.leader import Leadership
from nilemetrics.server.metrics_export import install_metrics
from nilemetrics.server.middleware import ConnectionAbortMiddleware, IngestBodyMiddleware
from nilemetrics.server.notify import listen
from nilemetrics.server.outage import OutageLog
from nilemetrics.server.redaction import install_redaction
from nilemetrics.server.routes import alerts as alert_routes
from nilemetrics.server.routes import dashboard, history, ingest, subjects, tracker, ws
from nilemetrics.server.services.cleanup import cleanup_loop
from nilemetrics.server.services.live_numbers import LiveNumbers
from nilemetrics.server.services.rollups import rollup_loop
from nilemetrics.server.shutdown import ShutdownWatch
from nilemetrics.server.socket_io import SocketIOEndpoint
from nilemetrics.server.state import Reader, ServerState
from nilemetrics.server.validation import validation_error_handler

log = logging.getLogger(__name__)

#: FastAPI telemetry settings of the server (and of the benchmark's bare baseline).
NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


class TrackingServer(FastAPI):
    """The FastAPI app with the ingestion body middleware as its front door.

    Every HTTP request meets :class:`IngestBodyMiddleware` (``front``) first, before
    FastAPI's own middleware (error pages, telemetry, its body limit) and ours
    (CORS). A valid single event is answered there; everything else goes on
    through the whole stack as before. Profiled under load, the layers a fast-path
    request went through for nothing were a seventh of the event loop's time
    (benchmarks/profile_ingest.py). The front door gives its own answers the CORS
    headers the CORS middleware would have (``CorsHeaders``).
    """

    front: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        front = self.front
        if front is not None and scope["type"] == "http":
            scope["app"] = self  # as Starlette sets it: handlers find the app's state by it
            await front(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, *, clock: Clock | None = None) -> FastAPI:
    """Build the tracking server; the lifespan opens the database and starts the loops."""
    clock = clock or SystemClock()
    outage = OutageLog(log)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        install_redaction()
        url = settings.effective_database_url()
        engine = make_engine(url, busy_timeout=settings.sqlite_busy_timeout)
        await asyncio.to_thread(migrate, engine)
        tokens, _generated = ensure_dashboard_tokens(settings)

        def on_commit(outcome: BatchOutcome) -> None:
            outage.succeeded()
            hub.mark_dirty(metrics=True, errors=outcome.payment_errors > 0)

        writer = GroupCommitWriter(
            engine,
            max_batch=settings.batch_max_events,
            on_commit=on_commit,
            process_url=url if settings.writer_process else None,
            busy_timeout=settings.sqlite_busy_timeout,
            write_timeout=settings.write_timeout,
            max_queued=settings.writer_queue_max,
            client_max_queued=settings.writer_client_queue_max(),
        )
        reader = Reader(engine, settings.write_timeout)
        numbers = LiveNumbers(
            reader=reader, writer=writer, clock=clock, live_window=settings.live_window
        )
        # One process of all those on the database runs the shared database jobs.
        leader = Leadership(url if engine.dialect.name == "postgresql" else None)
        app.state.leader = leader

        async def store_metrics(metrics: LiveMetrics) -> None:
            if leader.is_leader():  # its hub hears every process's changes (NOTIFY)
                await numbers.store(metrics)

        async def store_fresh_metrics() -> None:
            await numbers.store(await numbers.metrics())

        leader.on_elected(store_fresh_metrics)
        hub = Hub(
            compute_metrics=numbers.metrics,
            compute_errors=numbers.errors,
            store_metrics=store_metrics,
            push_interval=settings.push_interval,
            refresh_interval=settings.refresh_interval,
        )
        state = ServerState(
            settings=settings, engine=engine, clock=clock, tokens=tokens, writer=writer, hub=hub,
            reader=reader,
        )
        app.state.nm = state
        # Before anything starts: a bad rules file stops the server here.
        alerts = await asyncio.to_thread(alert_engine_for, settings, engine, clock, hub.mark_dirty)
        app.state.alerts = alerts
        await writer.start()
        hub.start()
        if alerts is not None:
            await alerts.start()
        if exporter is not None:
            exporter.bind(state, alerts)
        tasks = [
            asyncio.create_task(leader.run(), name="nm-leader"),
            asyncio.create_task(cleanup_loop(state, outage, leader), name="nm-cleanup"),
        ]
        if settings.rollups:
            tasks.append(asyncio.create_task(rollup_loop(state, leader), name="nm-rollups"))
        if engine.dialect.name == "postgresql":
            tasks.append(
                asyncio.create_task(
                    listen(url, lambda payload: hub.mark_dirty(errors=payload == "errors")),
                    name="nm-listen",
                )
            )
        # Everything built so far (FastAPI, pydantic, SQLAlchemy: hundreds of thousands
        # of objects) lives as long as the server. Frozen, the cyclic GC stops walking
        # it in every full collection: those pauses were most of the p99 latency under
        # load (see README "Performance").
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()
            with ShutdownWatch() as watch:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    watch.at(f"stopping {task.get_name()}")
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                if alerts is not None:
                    watch.at("stopping the alerts")
                    await alerts.stop()
                watch.at("closing Socket.IO")
                await socket_io.close()
                watch.at("stopping the hub")
                await hub.stop()
                watch.at("stopping the writer")
                await writer.stop()
                watch.at("closing the database connections")
                engine.dispose()

    app = TrackingServer(
        title="nilemetrics",
        version=__version__,
        summary="Live customer-activity tracking for online shops.",
        lifespan=lifespan,
        # FastAPI's native OpenTelemetry hooks look up the global providers (and
        # os.environ) on every request, for spans and metrics nilemetrics never
        # configures or exports (their cost: README "Performance").
        telemetry=NO_TELEMETRY,
    )
    app.state.outage = outage
    app.include_router(ingest.router)
    app.include_router(dashboard.router)
    app.include_router(history.router)
    app.include_router(ws.router)
    app.include_router(subjects.router)
    app.include_router(tracker.router)
    app.include_router(alert_routes.router)

    def client_full(scope: Scope) -> bool:
        state: ServerState | None = getattr(app.state, "nm", None)
        return state is not None and state.writer.client_full(client_of(scope))

    def live() -> tuple[Hub, list[str]]:
        state: ServerState = app.state.nm
        return state.hub, state.tokens

    # Mounted inside the app, so it sits behind the same middleware (CORS, body cap).
    socket_io = SocketIOEndpoint(allowed_origins=settings.allowed_origins, live=live)
    app.mount(SOCKETIO_PATH, socket_io.asgi_app(), name="socket.io")
    app.state.socket_io = socket_io
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(DatabaseUnavailable, _unavailable)
    app.add_exception_handler(DBAPIError, _unavailable)
    app.add_exception_handler(EventRejected, _rejected)
    app.add_exception_handler(StorageFull, _storage_full)
    app.add_exception_handler(ClientOverShare, _over_share)
    # After the error handlers (it counts their refusals), before the body middleware.
    exporter = install_metrics(app, settings)
    app.add_middleware(ConnectionAbortMiddleware)
    cors: dict[str, Any] = {
        "allow_origins": settings.allowed_origins,
        "allow_credentials": True,
        "allow_methods": ["GET", "POST", "DELETE", "OPTIONS"],
        "allow_headers": ["Content-Type", "Authorization", "X-Requested-With"],
        "max_age": 600,
    }
    # Outermost of the stack, so that error answers carry CORS headers the browser can read.
    app.add_middleware(CORSMiddleware, **cors)
    # In front of the whole stack (see TrackingServer).
    app.front = IngestBodyMiddleware(
        functools.partial(FastAPI.__call__, app),
        prefix=API_PREFIX,
        max_bytes=settings.max_body_bytes,
        fast=ingest.fast_handlers(),
        allowed_origins=settings.allowed_origins,
        busy=client_full,
        busy_paths=[route.path for route in ingest.router.routes if isinstance(route, APIRoute)],
        busy_detail=OVER_SHARE,
        refused=exporter.refused if exporter is not None else None,
        cors=CORSMiddleware(_no_app, **cors),
    )

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


async def _no_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The front door's CORS middleware only works out headers: it wraps no app."""
    raise RuntimeError("not an application")


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    reason = describe_db_error(exc) if isinstance(exc, DBAPIError) else str(exc)
    # One line when the outage starts, then summaries: not one line per request.
    outage: OutageLog = request.app.state.outage
    outage.failed(reason, f"{request.method} {request.url.path}")
    return JSONResponse(
        status_code=503,
        content={"detail": "database unavailable; nothing was stored, retry later"},
        headers={"Retry-After": "1"},
    )


async def _storage_full(request: Request, exc: Exception) -> JSONResponse:
    log.error("database disk full for %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        status_code=503,
        content={"detail": "database disk full; nothing was stored, retry later"},
        headers={"Retry-After": "30"},
    )


#: Answer to a client that already has its share of the writer's queue waiting.
OVER_SHARE = (
    "too many of this client's events are waiting to be written; nothing was stored, "
    "retry later"
)


async def _over_share(request: Request, exc: Exception) -> JSONResponse:
    # Not an outage: other clients are being served. Not logged per request either.
    return JSONResponse(
        status_code=429, content={"detail": OVER_SHARE}, headers={"Retry-After": "1"}
    )


async def _rejected(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": str(exc)})
