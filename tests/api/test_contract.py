"""The contract's one registry: every event type has a body, a route, a batch entry."""

from __future__ import annotations

import ast
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel

from nilemetrics.protocol.bodies import SessionEventIn, SessionStartIn
from nilemetrics.protocol.names import API_PREFIX, BATCH_PATH, EventType
from nilemetrics.protocol.registry import EVENTS
from nilemetrics.server.routes.ingest import fast_handlers
from tests.support import LiveServer

PROTOCOL = Path(__file__).resolve().parents[2] / "src" / "nilemetrics" / "protocol"


def minimal_bodies(sid: str) -> dict[EventType, dict[str, Any]]:
    """One valid body per event type (a new type without one here fails the tests)."""
    return {
        EventType.SESSION_START: {"sessionId": sid},
        EventType.SESSION_HEARTBEAT: {"sessionId": sid},
        EventType.PAGE_VISIT: {"sessionId": sid, "pageType": "homepage"},
        EventType.CHECKOUT_START: {"sessionId": sid, "checkoutItems": [], "totalAmount": 1},
        EventType.PAYMENT_START: {"sessionId": sid},
        EventType.PAYMENT_ERROR: {"sessionId": sid, "errorCode": "card_declined"},
        EventType.PAYMENT_SUCCESS: {"sessionId": sid},
        EventType.SESSION_END: {"sessionId": sid},
        EventType.EVENT: {"sessionId": sid, "name": "add_to_cart"},
    }


def test_every_event_type_has_a_registry_entry_with_a_body_model() -> None:
    """EventType and the registry list the same types; each body is a session body model."""
    assert set(EVENTS) == set(EventType)
    assert set(minimal_bodies("x")) == set(EventType)
    for kind, spec in EVENTS.items():
        assert spec.kind == kind
        assert issubclass(spec.body, SessionEventIn | SessionStartIn), kind
        assert issubclass(spec.answer, BaseModel), kind
        assert spec.path.startswith("/") and spec.path != BATCH_PATH, kind


def test_every_event_type_has_its_route_in_openapi(server: LiveServer) -> None:
    """Each type's path is a POST in /openapi.json whose body is the registry's model."""
    spec = httpx.get(f"{server.base_url}/openapi.json").json()
    for kind, entry in EVENTS.items():
        operation = spec["paths"][API_PREFIX + entry.path]["post"]
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        refs = [schema.get("$ref", "")] + [o.get("$ref", "") for o in schema.get("anyOf", [])]
        assert f"#/components/schemas/{entry.body.__name__}" in refs, kind
        assert operation["description"].startswith(entry.summary.split(";")[0]), kind


def test_fast_path_serves_exactly_the_registry_fast_routes() -> None:
    """The fast path's routes come from the registry's ``fast`` flag, nothing else."""
    expected = {API_PREFIX + spec.path for spec in EVENTS.values() if spec.fast}
    assert set(fast_handlers()) == expected
    assert expected  # the hottest routes are fast


def test_every_event_type_is_accepted_alone_and_in_a_batch(server: LiveServer) -> None:
    """Each type's minimal body is stored by its own route and as a batch item."""
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        for kind, body in minimal_bodies(str(uuid.uuid4())).items():
            response = http.post(API_PREFIX + EVENTS[kind].path, json=body)
            assert response.status_code == 200, (kind, response.text)
        sid = str(uuid.uuid4())
        items = [{"type": str(kind), **body} for kind, body in minimal_bodies(sid).items()]
        response = http.post(API_PREFIX + BATCH_PATH, json={"events": items})
        assert response.status_code == 200, response.text
        assert response.json() == {"success": True, "accepted": len(items), "duplicates": 0}


def test_protocol_imports_only_the_standard_library_and_pydantic() -> None:
    """nilemetrics.protocol can be used by any client: stdlib, pydantic and itself only."""
    allowed = set(sys.stdlib_module_names) | {"pydantic", "pydantic_core", "nilemetrics"}
    found: dict[str, set[str]] = {}
    for path in sorted(PROTOCOL.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in allowed or (
                    top == "nilemetrics" and not name.startswith("nilemetrics.protocol")
                ):
                    found.setdefault(path.name, set()).add(name)
    assert found == {}
