"""``GET /api/metrics/alerts``: every alert rule's state and the notifications not sent yet."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, select

from nilemetrics.protocol import API_PREFIX
from nilemetrics.server.alerts.engine import AlertEngine
from nilemetrics.server.alerts.outbox import pending_rows
from nilemetrics.server.openapi import problems
from nilemetrics.server.state import StateDep, TokenDep
from nilemetrics.server.tables import alert_state_t

router = APIRouter(
    prefix=API_PREFIX, tags=["dashboard"], dependencies=[TokenDep], responses=problems(401, 503)
)


class AlertRuleOut(BaseModel):
    """One rule: its condition and where it stands."""

    model_config = ConfigDict(populate_by_name=True)

    rule: str
    metric: str
    direction: Literal["above", "below"]
    threshold: float
    window_seconds: float | None = Field(alias="windowSeconds")
    for_seconds: float | None = Field(
        alias="forSeconds", description="How long it must hold (null: not in this server's file)."
    )
    state: Literal["ok", "pending", "firing", "unknown"] = Field(
        description="unknown: not evaluated yet."
    )
    since: datetime | None = Field(description="When the rule entered its state.")
    value: float | None = Field(description="The metric at the last evaluation.")
    evaluated_at: datetime | None = Field(alias="evaluatedAt")
    episode: int = Field(description="How many times the rule has started firing.")


class PendingNotificationOut(BaseModel):
    """A notification not delivered yet."""

    model_config = ConfigDict(populate_by_name=True)

    id: int
    rule: str
    kind: str
    notifier: str
    attempts: int
    last_error: str | None = Field(alias="lastError")
    created_at: datetime = Field(alias="createdAt")
    next_attempt_at: datetime = Field(alias="nextAttemptAt")


class AlertsOut(BaseModel):
    """The alert rules (shared state of every process) and the undelivered notifications."""

    model_config = ConfigDict(populate_by_name=True)

    configured: bool = Field(description="This server evaluates a rules file (serve --alerts).")
    file: str | None = Field(description="The rules file of this server.")
    rules: list[AlertRuleOut]
    pending: list[PendingNotificationOut]


def _alerts(conn: Connection, engine: AlertEngine | None) -> dict[str, Any]:
    stored = {row.rule: row for row in conn.execute(select(alert_state_t))}
    rules: list[dict[str, Any]] = []
    configured = engine.config.rules if engine is not None else ()
    for rule in configured:
        row = stored.pop(rule.name, None)
        rules.append({
            "rule": rule.name, "metric": rule.metric, "direction": rule.direction,
            "threshold": rule.threshold, "window_seconds": rule.window,
            "for_seconds": rule.hold,
            "state": row.state if row is not None else "unknown",
            "since": row.since if row is not None else None,
            "value": row.value if row is not None else None,
            "evaluated_at": row.evaluated_at if row is not None else None,
            "episode": row.episode if row is not None else 0,
        })
    for name in sorted(stored):
        row = stored[name]
        rules.append({
            "rule": row.rule, "metric": row.metric, "direction": row.direction,
            "threshold": row.threshold, "window_seconds": row.window_seconds,
            "for_seconds": None, "state": row.state, "since": row.since, "value": row.value,
            "evaluated_at": row.evaluated_at, "episode": row.episode,
        })
    return {
        "configured": engine is not None,
        "file": str(engine.config.path) if engine is not None else None,
        "rules": rules,
        "pending": pending_rows(conn),
    }


@router.get("/alerts", response_model=AlertsOut)
async def alerts(request: Request, state: StateDep) -> dict[str, Any]:
    """Every alert rule with its state (firing, pending, ok) since when, and pending sends."""
    engine: AlertEngine | None = getattr(request.app.state, "alerts", None)
    return await state.read(lambda conn: _alerts(conn, engine))
