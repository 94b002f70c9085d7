"""``GET /metrics``: the server's numbers in the Prometheus text format (prometheus_client).

Two kinds of numbers, as Prometheus expects from several processes:

- **this process's counters and histograms** (events written by type, requests
  refused by reason, payment errors by code, payment successes, writer batch size
  and commit latency, database errors, notifications sent): each process counts
  its own, and Prometheus adds them up across targets (``sum()``);
- **shared gauges read from the database at scrape time** (live sessions per page
  type, alert states, notifications pending), the same on every process.

Counting costs the ingestion path nothing per request: events are counted once per
committed batch (a hook in the writer), refusals where they are answered (the
error handlers, the body middleware, and a middleware that only sees requests that
did not take the fast path). ``metrics_endpoint = false`` turns all of it off.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from typing import Any

import prometheus_client
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine, event, select
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nilemetrics.config import Settings
from nilemetrics.protocol import PageType
from nilemetrics.protocol.bodies import PaymentErrorIn
from nilemetrics.protocol.registry import EVENTS
from nilemetrics.server.alerts.engine import AlertEngine
from nilemetrics.server.alerts.outbox import pending_count
from nilemetrics.server.auth import require_token
from nilemetrics.server.db import DatabaseUnavailable
from nilemetrics.server.ingestion.errors import (
    ClientOverShare,
    EventRejected,
    StorageFull,
    WriterBusy,
    WriteTimedOut,
)
from nilemetrics.server.ingestion.events import BatchOutcome, TrackedEvent
from nilemetrics.server.live import live_counts
from nilemetrics.server.openapi import problems
from nilemetrics.server.state import ServerState
from nilemetrics.server.tables import alert_state_t

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"

#: Event types as the wire names them (``nilemetrics_events_total{type=...}``).
EVENT_TYPES = tuple(str(kind) for kind in EVENTS)

#: Why an ingestion request was refused (``nilemetrics_events_refused_total{reason=...}``).
REFUSAL_REASONS = (
    "invalid", "bad_json", "too_large", "client_over_share", "queue_full", "timeout",
    "unavailable", "disk_full", "refused_by_database",
)

_BY_STATUS = {400: "bad_json", 413: "too_large", 422: "invalid", 429: "client_over_share",
              503: "unavailable"}

#: Most distinct error codes given a series of their own; the rest count as "other".
#: (Codes come from shops' clients: unbounded label values would swamp Prometheus.)
MAX_ERROR_CODES = 100

# Scope keys: the request went through the refusal middleware / why it was refused.
_SEEN = "nilemetrics.metrics.seen"
_REASON = "nilemetrics.metrics.reason"


def refusal_reason(exc: BaseException, status: int) -> str:
    """The ``reason`` label of a refusal answered ``status`` because of ``exc``."""
    if isinstance(exc, RequestValidationError):
        return "bad_json" if status == 400 else "invalid"
    if isinstance(exc, ClientOverShare):
        return "client_over_share"
    if isinstance(exc, WriterBusy):
        return "queue_full"
    if isinstance(exc, WriteTimedOut):
        return "timeout"
    if isinstance(exc, StorageFull):
        return "disk_full"
    if isinstance(exc, EventRejected):
        return "refused_by_database"
    if isinstance(exc, DatabaseUnavailable):
        return "unavailable"
    return _BY_STATUS.get(status, f"http_{status}")


class MetricsExporter:
    """This process's Prometheus registry and the hooks that feed it."""

    def __init__(self, settings: Settings, ingest_paths: frozenset[str]) -> None:
        self.settings = settings
        self.ingest_paths = ingest_paths
        self._writer_process = settings.writer_process
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.events = Counter(
            "nilemetrics_events", "Events this process wrote, by type (duplicates included).",
            ["type"], registry=r)
        self.duplicates = Counter(
            "nilemetrics_events_duplicate",
            "Events this process was sent again (a stored eventId), by type.", ["type"],
            registry=r)
        self.refusals = Counter(
            "nilemetrics_events_refused",
            "Ingestion requests this process refused, by reason (a refused batch counts once).",
            ["reason"], registry=r)
        self.payment_errors = Counter(
            "nilemetrics_payment_errors", "Payment errors this process wrote, by error code.",
            ["code"], registry=r)
        self.payment_successes = Counter(
            "nilemetrics_payment_successes", "Payment successes this process wrote.",
            registry=r)
        self.batch_events = Histogram(
            "nilemetrics_writer_batch_events", "Events per group commit of this process.",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000), registry=r)
        self.commit_seconds = Histogram(
            "nilemetrics_writer_commit_seconds",
            "Seconds from handing a batch to the database to its commit, this process.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r)
        self.database_errors = Counter(
            "nilemetrics_database_errors",
            "Database operations of this process that failed (any statement or connection).",
            registry=r)
        self._event_counters = {kind: self.events.labels(kind) for kind in EVENT_TYPES}
        self._duplicate_counters = {kind: self.duplicates.labels(kind) for kind in EVENT_TYPES}
        for reason in REFUSAL_REASONS:
            self.refusals.labels(reason)
        self._codes: dict[str, Any] = {}
        self.state: ServerState | None = None
        self.alerts: AlertEngine | None = None
        self._scrape: list[Metric] = []
        r.register(_Scraped(self))

    # ---------------------------------------------------------------- feeding

    def bind(self, state: ServerState, alerts: AlertEngine | None) -> None:
        """Start observing a running server: its writer, its engine, its alert engine."""
        self.state = state
        self.alerts = alerts
        state.writer.observer = self
        self.watch_engine(state.engine)

    def watch_engine(self, engine: Engine) -> None:
        """Count every failed statement or connection of ``engine`` as a database error."""

        def count(_context: Any) -> None:
            self.database_errors.inc()

        event.listen(engine, "handle_error", count)

    def committed(self, events: list[TrackedEvent], outcome: BatchOutcome,
                  seconds: float) -> None:
        """A batch was committed (the writer's observer hook; on the event loop)."""
        self.batch_events.observe(len(events))
        self.commit_seconds.observe(seconds)
        counts: dict[str, int] = {}
        duplicates: dict[str, int] = {}
        for item, applied in zip(events, outcome.applied, strict=False):
            kind = item.kind
            counts[kind] = counts.get(kind, 0) + 1
            if not applied:
                duplicates[kind] = duplicates.get(kind, 0) + 1
            elif kind == "payment-error":
                self._error_code(item)
            elif kind == "payment-success":
                self.payment_successes.inc()
        for name, n in counts.items():
            self._event_counter(name, self._event_counters, self.events).inc(n)
        for name, n in duplicates.items():
            self._event_counter(name, self._duplicate_counters, self.duplicates).inc(n)

    def failed(self, exc: BaseException) -> None:
        """A batch failed in the writer (the writer's observer hook)."""
        # In a thread the writer uses this process's engine, whose errors count already.
        if self._writer_process:
            self.database_errors.inc()

    @staticmethod
    def _event_counter(kind: str, cache: dict[str, Any], metric: Counter) -> Any:
        child = cache.get(kind)
        if child is None:
            child = cache[kind] = metric.labels(kind)
        return child

    def _error_code(self, item: TrackedEvent) -> None:
        body = item.body
        code = body.normalised().error_code if isinstance(body, PaymentErrorIn) else None
        label = code or "none"
        child = self._codes.get(label)
        if child is None:
            if len(self._codes) >= MAX_ERROR_CODES:
                label = "other"
                child = self._codes.get(label)
            if child is None:
                child = self._codes[label] = self.payment_errors.labels(label)
        child.inc()

    def refused(self, reason: str) -> None:
        """An ingestion request was refused."""
        self.refusals.labels(reason).inc()

    # -------------------------------------------------------------- installing

    def install(self, app: FastAPI) -> None:
        """Add ``GET /metrics``, count refusals in the app's error handlers and middleware.

        Call after the exception handlers are added and before the body middleware is
        (so that the refusal middleware sits inside it).
        """
        handlers: dict[Any, Callable[..., Any]] = app.exception_handlers
        for exc_type, handler in list(handlers.items()):
            if isinstance(exc_type, type):
                handlers[exc_type] = self._counting(handler)
        app.add_middleware(RefusalMiddleware, exporter=self)
        app.add_api_route(
            METRICS_PATH, self.endpoint, methods=["GET"], tags=["monitoring"],
            summary="Prometheus metrics",
            response_class=Response,
            responses={
                200: {"description": "The Prometheus text format.",
                      "content": {"text/plain": {"schema": {"type": "string"}}}},
                **({} if self.settings.metrics_public else problems(401)),
            },
        )

    def _counting(self, handler: Callable[..., Any]) -> Callable[..., Awaitable[Response]]:
        async def counted(request: Request, exc: Exception) -> Response:
            response = handler(request, exc)
            if hasattr(response, "__await__"):
                response = await response
            assert isinstance(response, Response)
            scope = request.scope
            if (
                response.status_code >= 400 and scope.get("method") == "POST"
                and scope.get("path") in self.ingest_paths
            ):
                reason = refusal_reason(exc, response.status_code)
                if scope.get(_SEEN):
                    scope[_REASON] = reason  # the middleware counts it as it goes out
                else:
                    self.refused(reason)  # the fast path answered it: nobody else sees it
            return response

        return counted

    # ----------------------------------------------------------------- serving

    async def endpoint(self, request: Request) -> Response:
        """Every metric of this process, and the shared ones from the database."""
        if not self.settings.metrics_public:
            assert self.state is not None
            require_token(request, self.state.tokens)
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        self._scrape = await self._shared()
        return Response(encode(self.registry), media_type=None,
                        headers={"Content-Type": content_type})

    async def _shared(self) -> list[Metric]:
        state = self.state
        assert state is not None
        families: list[Metric] = []
        now = state.now()
        window = state.settings.live_window
        try:
            pages, alerts, pending = await state.read(lambda conn: _shared_numbers(conn, now,
                                                                                    window))
            up = 1.0
        except DatabaseUnavailable:
            pages, alerts, pending, up = None, [], None, 0.0
        families.append(GaugeMetricFamily(
            "nilemetrics_database_up",
            "1 if this scrape could read the database, else 0 (the shared gauges are missing).",
            value=up))
        if pages is not None:
            live = GaugeMetricFamily(
                "nilemetrics_live_sessions",
                "Sessions live now per page type (shared: read from the database).",
                labels=["page_type"])
            for page_type in sorted({*(p.value for p in PageType), *pages}):
                live.add_metric([page_type], pages.get(page_type, 0))
            families.append(live)
        writer = GaugeMetricFamily(
            "nilemetrics_writer_queue_depth", "Events waiting for this process's writer.",
            value=state.writer.queue_depth)
        subscribers = GaugeMetricFamily(
            "nilemetrics_websocket_subscribers",
            "Dashboards (WebSocket and Socket.IO) connected to this process.",
            value=len(state.hub.subscribers))
        families += [writer, subscribers]
        firing = GaugeMetricFamily(
            "nilemetrics_alert_firing", "1 while the alert rule fires, else 0 (shared).",
            labels=["rule"])
        value = GaugeMetricFamily(
            "nilemetrics_alert_value", "The alert rule's metric at its last evaluation (shared).",
            labels=["rule"])
        for rule, rule_state, rule_value in alerts:
            firing.add_metric([rule], 1.0 if rule_state == "firing" else 0.0)
            if rule_value is not None:
                value.add_metric([rule], rule_value)
        families += [firing, value]
        if pending is not None:
            families.append(GaugeMetricFamily(
                "nilemetrics_alert_notifications_pending",
                "Alert notifications not delivered yet (shared).", value=pending))
        engine = self.alerts
        if engine is not None:
            sent = CounterMetricFamily(
                "nilemetrics_alert_notifications_sent",
                "Alert notifications this process delivered, by kind.", labels=["kind"])
            for kind in ("firing", "repeat", "resolved"):
                sent.add_metric([kind], engine.sent[kind])
            families.append(sent)
            families.append(CounterMetricFamily(
                "nilemetrics_alert_delivery_failures",
                "Failed attempts of this process to deliver an alert notification.",
                value=engine.failed_sends))
            ticks = CounterMetricFamily(
                "nilemetrics_alert_evaluations",
                "Alert evaluation ticks of this process (skipped: another process held the "
                "lock; failed: the database did not answer).",
                labels=["outcome"])
            ticks.add_metric(["ran"], engine.ticks)
            ticks.add_metric(["skipped"], engine.skipped_ticks)
            ticks.add_metric(["failed"], engine.failed_ticks)
            families.append(ticks)
        return families


def _shared_numbers(
    conn: Connection, now: datetime, live_window: float
) -> tuple[dict[str, int], list[tuple[str, str, float | None]], int]:
    pages: dict[str, int] = live_counts(conn, now, live_window)["pages"]
    a = alert_state_t.c
    alerts = [
        (str(row.rule), str(row.state), row.value)
        for row in conn.execute(select(a.rule, a.state, a.value).order_by(a.rule))
    ]
    return pages, alerts, pending_count(conn)


class _Scraped(Collector):
    """The shared numbers read for the scrape being answered."""

    def __init__(self, exporter: MetricsExporter) -> None:
        self._exporter = exporter

    def collect(self) -> Iterator[Metric]:
        """The families read just before this scrape was encoded."""
        yield from self._exporter._scrape


class RefusalMiddleware:
    """Counts the ingestion requests answered 4xx/5xx that went through the application.

    Sits inside the body middleware, so requests the fast path answers (nearly all
    traffic) never reach it and pay nothing for it.
    """

    def __init__(self, app: ASGIApp, *, exporter: MetricsExporter) -> None:
        self.app = app
        self.exporter = exporter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http" or scope["method"] != "POST"
            or scope["path"] not in self.exporter.ingest_paths
        ):
            await self.app(scope, receive, send)
            return
        scope[_SEEN] = True

        async def counting(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                status = int(message["status"])
                self.exporter.refused(scope.get(_REASON) or _BY_STATUS.get(status,
                                                                           f"http_{status}"))
            await send(message)

        await self.app(scope, receive, counting)


def ingest_paths() -> frozenset[str]:
    """Full paths of the ingestion routes (all POST)."""
    from nilemetrics.server.routes import ingest

    return frozenset(route.path for route in ingest.router.routes if isinstance(route, APIRoute))


def install_metrics(app: FastAPI, settings: Settings) -> MetricsExporter | None:
    """Set up ``/metrics`` and its counters on ``app``; None if ``metrics_endpoint`` is off."""
    if not settings.metrics_endpoint:
        return None
    # Counters' "_created" series double the output and nobody here reads them.
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
    exporter = MetricsExporter(settings, ingest_paths())
    exporter.install(app)
    return exporter
