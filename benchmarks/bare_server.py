"""The bare baseline: the same page-visit body model and server, no storage at all."""

from __future__ import annotations

from fastapi import FastAPI

from nilemetrics.server.schemas import PageVisitIn, SuccessOut

app = FastAPI()


@app.post("/api/metrics/track/page-visit", response_model=SuccessOut)
async def page_visit(body: PageVisitIn) -> SuccessOut:
    """Validate and answer, like the real endpoint minus the database."""
    return SuccessOut()
