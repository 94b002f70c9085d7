"""The bare baseline: the same page-visit body model and server, no storage at all."""

from __future__ import annotations

from fastapi import FastAPI

from nilemetrics.protocol.answers import SuccessOut
from nilemetrics.protocol.bodies import PageVisitIn
from nilemetrics.server.app import NO_TELEMETRY

# Without FastAPI's OpenTelemetry hooks, as nilemetrics runs (see create_app): the
# comparison is between our storage path and none, on the same framework settings.
app = FastAPI(telemetry=NO_TELEMETRY)


@app.post("/api/metrics/track/page-visit", response_model=SuccessOut)
async def page_visit(body: PageVisitIn) -> SuccessOut:
    """Validate and answer, like the real endpoint minus the database."""
    return SuccessOut()
