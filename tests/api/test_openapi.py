"""/openapi.json describes what the server really sends, errors included."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from nilemetrics.protocol.answers import ProblemOut, ValidationProblemOut
from tests.api.journeys import P
from tests.support import LiveServer

_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list,
    "object": dict, "null": type(None),
}


def conforms(value: Any, schema: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    """Where ``value`` breaks ``schema`` (the JSON Schema subset FastAPI emits); [] if nowhere."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        return conforms(value, spec["components"]["schemas"][name], spec)
    if "anyOf" in schema:
        tries = [conforms(value, option, spec) for option in schema["anyOf"]]
        return [] if any(not t for t in tries) else [f"{value!r} matches no anyOf option"]
    problems: list[str] = []
    kind = schema.get("type")
    if kind is not None and (
        not isinstance(value, _TYPES[kind]) or (kind == "integer" and isinstance(value, bool))
    ):
        return [f"{value!r} is not {kind}"]
    if kind == "object":
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                problems.append(f"{name} missing")
        for name, item in value.items():
            if name not in properties:
                problems.append(f"{name} not declared")
            else:
                problems += [f"{name}: {p}" for p in conforms(item, properties[name], spec)]
    if kind == "array":
        for item in value:
            problems += conforms(item, schema.get("items", {}), spec)
    return problems


def declared(spec: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    """The JSON schema /openapi.json declares for one answer."""
    responses = spec["paths"][path][method]["responses"]
    assert str(status) in responses, (path, method, status, sorted(responses))
    schema: dict[str, Any] = responses[str(status)]["content"]["application/json"]["schema"]
    return schema


def test_error_answers_match_the_declared_schemas(server: LiveServer) -> None:
    """Real 400, 401, 404, 413 and 422 answers conform to what /openapi.json declares."""
    sid = str(uuid.uuid4())
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        spec = client.get("/openapi.json").json()
        cases: list[tuple[str, str, httpx.Response]] = [
            (f"{P}/track/page-visit", "post",
             client.post(f"{P}/track/page-visit",
                         json={"sessionId": "nope", "pageType": "homepage"})),
            (f"{P}/events", "post", client.post(f"{P}/events", json={"events": [
                {"type": "page-visit", "sessionId": sid, "pageType": "moon landing!"}]})),
            (f"{P}/session/heartbeat", "post",
             client.post(f"{P}/session/heartbeat", content=b"{",
                         headers={"Content-Type": "application/json"})),
            (f"{P}/track/checkout-start", "post",
             client.post(f"{P}/track/checkout-start", content=b"x" * 70_000)),
            (f"{P}/live-metrics", "get", client.get(f"{P}/live-metrics")),
            (f"{P}/payment-errors", "get",
             client.get(f"{P}/payment-errors", params={"limit": 0}, headers=server.auth)),
            (f"{P}/subjects", "delete",
             client.request("DELETE", f"{P}/subjects", json={}, headers=server.auth)),
            ("/tracker-{version}.js", "get", client.get("/tracker-0.0.0.js")),
        ]
    statuses = []
    for path, method, response in cases:
        statuses.append(response.status_code)
        schema = declared(spec, path, method, response.status_code)
        assert conforms(response.json(), schema, spec) == [], (path, response.text)
    assert statuses == [422, 422, 400, 413, 401, 422, 422, 404]
    # The same answers read by the published models.
    field = ValidationProblemOut.model_validate(cases[0][2].json())
    assert field.detail == (
        "sessionId: must be a UUID such as 3f2b8c1e-7d4a-4c3b-9e1f-2a5b6c7d8e9f"
    )
    assert [(e.field, e.message) for e in field.errors] == [
        ("sessionId", "must be a UUID such as 3f2b8c1e-7d4a-4c3b-9e1f-2a5b6c7d8e9f")
    ]
    assert ProblemOut.model_validate(cases[2][2].json()).detail == (
        "request body is not valid JSON"
    )
    assert ProblemOut.model_validate(cases[3][2].json()).detail == (
        "request body too large: the limit is 65536 bytes"
    )


def test_openapi_declares_every_error_and_uuid_session_ids(client: httpx.Client) -> None:
    """Ingestion declares 400/413/422/429/503, no stock 422 schema is left, sessionId is a uuid."""
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    ingestion = [
        (path, op) for path, ops in spec["paths"].items() for op in ops.values()
        if "ingestion" in op.get("tags", [])
    ]
    assert len(ingestion) == 10  # the event types and the batch endpoint
    for path, op in ingestion:
        assert {"200", "400", "413", "422", "429", "503"} == set(op["responses"]), path
    for model in ("SessionEventIn", "PageVisitIn", "CheckoutStartIn", "PaymentErrorIn",
                  "CustomEventIn"):
        session_id = schemas[model]["properties"]["sessionId"]
        assert (session_id["type"], session_id["format"]) == ("string", "uuid"), model
    [optional, _null] = schemas["SessionStartIn"]["properties"]["sessionId"]["anyOf"]
    assert (optional["type"], optional["format"]) == ("string", "uuid")
    answer = schemas["SessionStartOut"]["properties"]["sessionId"]
    assert (answer["type"], answer["format"]) == ("string", "uuid")
    problem = schemas["ValidationProblemOut"]
    assert problem["properties"]["detail"]["type"] == "string"
    assert problem["required"] == ["detail"]


def test_history_routes_are_documented_and_answer_their_schemas(server: LiveServer) -> None:
    """History, replay, lookups, journeys and the report: declared, and real answers conform."""
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        sid = client.post(f"{P}/session/start", json={"email": "ann@example.com"}).json()[
            "sessionId"]
        client.post(f"{P}/track/page-visit", json={"sessionId": sid, "pageType": "homepage"})
        spec = client.get("/openapi.json").json()
        auth = server.auth
        cases: list[tuple[str, httpx.Response]] = [
            (f"{P}/history", client.get(f"{P}/history", headers=auth,
                                        params={"since": "2026-11-24T11:00:00Z"})),
            (f"{P}/history", client.get(f"{P}/history", headers=auth, params={"step": "7m"})),
            (f"{P}/history/snapshot", client.get(f"{P}/history/snapshot", headers=auth,
                                                 params={"at": "2026-11-01T00:00:00Z"})),
            (f"{P}/sessions", client.get(f"{P}/sessions", headers=auth,
                                         params={"email": "ann@example.com"})),
            (f"{P}/sessions", client.get(f"{P}/sessions", headers=auth,
                                         params={"page": "homepage"})),
            (f"{P}/sessions/{{session_id}}", client.get(f"{P}/sessions/{sid}", headers=auth)),
            (f"{P}/sessions/{{session_id}}", client.get(f"{P}/sessions/{uuid.uuid4()}",
                                                        headers=auth)),
            (f"{P}/report", client.get(f"{P}/report", headers=auth)),
        ]
    statuses = []
    for path, response in cases:
        statuses.append(response.status_code)
        schema = declared(spec, path, "get", response.status_code)
        assert conforms(response.json(), schema, spec) == [], (path, response.text)
    assert statuses == [200, 422, 404, 200, 200, 200, 404, 200]
    for path in ("/history", "/history/snapshot", "/sessions", "/sessions/{session_id}",
                 "/report"):
        assert {"200", "401", "422", "503"} <= set(spec["paths"][P + path]["get"]["responses"])
    schemas = spec["components"]["schemas"]
    for model in ("HistoryOut", "HistoryPoint", "SessionsOut", "JourneyOut", "ReportOut"):
        assert model in schemas
