"""GET /metrics: the Prometheus text format, read back with prometheus_client's own parser."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
import websockets.sync.client as ws_client
from prometheus_client.parser import text_string_to_metric_families

from nilemetrics.config import Settings
from tests.api.journeys import P, nested_error, post, start, visit
from tests.support import LiveServer, run_server

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(base_url: str, headers: dict[str, str] | None = None) -> tuple[Samples, set[str]]:
    """Every sample of GET /metrics by (name, labels), and the metric family names."""
    response = httpx.get(f"{base_url}/metrics", headers=headers or {}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples: Samples = {}
    families: set[str] = set()
    for family in text_string_to_metric_families(response.text):
        families.add(family.name)
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples, families


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (KeyError if the series is missing)."""
    return samples[(name, tuple(sorted(labels.items())))]


def test_counters_gauges_and_histograms(server: LiveServer, client: httpx.Client) -> None:
    """Events by type, refusals by reason, error codes, successes, writer and live numbers."""
    with ws_client.connect(f"{server.ws_url}?token={server.token}") as ws:
        ws.recv(timeout=5)
        a = start(client, email="eve@example.com")
        b = start(client)
        visit(client, a, "homepage")
        repeated = {"sessionId": b, "pageType": "category", "pageIdentifier": "books",
                    "eventId": str(uuid.uuid4())}
        post(client, "track/page-visit", repeated)
        post(client, "track/page-visit", repeated)  # a duplicate: stored once
        post(client, "track/checkout-start",
             {"sessionId": a, "checkoutItems": [{"name": "Lamp"}], "totalAmount": 20})
        post(client, "track/payment-error", nested_error(a, "card_declined", "Declined"))
        post(client, "track/payment-error", {"sessionId": a, "errorCode": "card_declined"})
        post(client, "track/payment-success", {"sessionId": a})
        # Refused: on the fast path, through the route, and by the body middleware.
        bad_id = client.post(f"{P}/track/page-visit", json={"sessionId": "x", "pageType": "a"})
        bad_batch = client.post(f"{P}/events", json={"events": [{"type": "nope"}]})
        bad_json = client.post(f"{P}/session/heartbeat", content=b"{",
                               headers={"Content-Type": "application/json"})
        too_big = client.post(f"{P}/track/checkout-start", content=b"x" * 70_000)
        assert [r.status_code for r in (bad_id, bad_batch, bad_json, too_big)] == [
            422, 422, 400, 413]
        samples, families = scrape(server.base_url, server.auth)
        pages = client.get(f"{P}/live-metrics", headers=server.auth).json()["pages"]
    events = {kind: value(samples, "nilemetrics_events_total", type=kind) for kind in (
        "session-start", "page-visit", "checkout-start", "payment-error", "payment-success",
        "session-end")}
    assert events == {"session-start": 2, "page-visit": 3, "checkout-start": 1,
                      "payment-error": 2, "payment-success": 1, "session-end": 0}
    assert value(samples, "nilemetrics_events_duplicate_total", type="page-visit") == 1
    assert value(samples, "nilemetrics_payment_errors_total", code="card_declined") == 2
    assert value(samples, "nilemetrics_payment_successes_total") == 1
    refused = {reason: value(samples, "nilemetrics_events_refused_total", reason=reason)
               for reason in ("invalid", "bad_json", "too_large", "unavailable")}
    assert refused == {"invalid": 2, "bad_json": 1, "too_large": 1, "unavailable": 0}
    batches = value(samples, "nilemetrics_writer_batch_events_count")
    assert value(samples, "nilemetrics_writer_batch_events_sum") == 9  # every event written
    assert 1 <= batches <= 9
    assert value(samples, "nilemetrics_writer_commit_seconds_count") == batches
    assert value(samples, "nilemetrics_writer_commit_seconds_bucket", le="+Inf") == batches
    assert value(samples, "nilemetrics_writer_queue_depth") == 0
    assert value(samples, "nilemetrics_websocket_subscribers") == 1
    assert value(samples, "nilemetrics_database_up") == 1
    assert value(samples, "nilemetrics_database_errors_total") == 0
    # Live sessions per page type as live-metrics counts them, known types at 0 too.
    live = {dict(labels)["page_type"]: n for (name, labels), n in samples.items()
            if name == "nilemetrics_live_sessions"}
    assert sum(live.values()) == 2 and live["category"] == 1
    assert {k: n for k, n in live.items() if n} == pages
    assert live["offer"] == 0 and live["payment_error"] == 0
    assert "nilemetrics_alert_firing" in families  # empty without serve --alerts
    assert not [key for key in samples if key[0] == "nilemetrics_alert_firing"]
    assert all(name.startswith("nilemetrics_") for name in families)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_token_public_and_off(settings: Settings) -> None:
    """401 without the token; --metrics-public serves it openly; metrics_endpoint off: 404."""
    with run_server(settings) as live:
        missing = httpx.get(f"{live.base_url}/metrics", timeout=10)
        wrong = httpx.get(f"{live.base_url}/metrics", headers={"Authorization": "Bearer no"},
                          timeout=10)
        spec: dict[str, Any] = httpx.get(f"{live.base_url}/openapi.json", timeout=10).json()
    assert (missing.status_code, missing.json()) == (401, {"detail": "missing bearer token"})
    assert (wrong.status_code, wrong.json()) == (401, {"detail": "invalid bearer token"})
    assert set(spec["paths"]["/metrics"]["get"]["responses"]) == {"200", "401"}
    with run_server(settings.model_copy(update={"metrics_public": True})) as live:
        samples, _families = scrape(live.base_url)
        assert value(samples, "nilemetrics_database_up") == 1
    with run_server(settings.model_copy(update={"metrics_endpoint": False})) as live:
        assert httpx.get(f"{live.base_url}/metrics", headers=live.auth).status_code == 404
        # Ingestion is unaffected by the counters being off.
        with httpx.Client(base_url=live.base_url, timeout=10) as client:
            visit(client, start(client), "homepage")


def test_openmetrics_when_asked(server: LiveServer) -> None:
    """A scraper asking for OpenMetrics gets it (ending in # EOF), parsed by the same library."""
    from prometheus_client.openmetrics.parser import (
        text_string_to_metric_families as openmetrics_families,
    )

    response = httpx.get(f"{server.base_url}/metrics", timeout=10, headers={
        **server.auth, "Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    names = {family.name for family in openmetrics_families(response.text)}
    assert {"nilemetrics_events", "nilemetrics_live_sessions",
            "nilemetrics_writer_commit_seconds"} <= names


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_database_down_shows_in_the_counters(settings: Settings) -> None:
    """PostgreSQL unreachable: database errors and 503 refusals count, database_up is 0."""
    from tests.support import TcpProxy

    proxy = TcpProxy(5432)
    proxy.start()
    via_proxy = settings.database_url.replace(":5432/", f":{proxy.port}/")  # type: ignore[union-attr]
    try:
        with run_server(settings.model_copy(update={"database_url": via_proxy})) as live, \
                httpx.Client(base_url=live.base_url, timeout=30) as http:
            sid = start(http)
            before, _families = scrape(live.base_url, live.auth)
            assert value(before, "nilemetrics_database_up") == 1
            proxy.stop()
            down = http.post(f"{P}/track/page-visit", json={"sessionId": sid, "pageType": "a"})
            assert down.status_code == 503
            during, families = scrape(live.base_url, live.auth)  # still answers: 200
    finally:
        proxy.stop()
    assert value(during, "nilemetrics_database_up") == 0
    assert "nilemetrics_live_sessions" not in {key[0] for key in during}
    assert value(during, "nilemetrics_database_errors_total") >= 1
    assert value(during, "nilemetrics_events_refused_total", reason="unavailable") == 1
    assert value(during, "nilemetrics_events_total", type="session-start") == 1
