"""A/B experiment results: ``nilemetrics report --experiment NAME``.

Assignments are custom events named ``experiment`` (properties ``experiment``,
``variant`` and, from the tracker, ``visitor``), sent by the tracker's
``experiment()`` or by the shop's servers. A visitor is the ``visitor`` property
or, without one, the session. A visitor converts when a session in which they
were assigned reaches the goal: ``paid`` (a checkout paid), ``checkout`` (a
checkout started) or ``event:NAME`` (a custom event of that name).

The statistics come from statsmodels and SciPy, never from formulas written
here: Wilson intervals for each rate, a two-proportion z-test and Newcomb's
interval for the difference to control, and a chi-square goodness-of-fit test
of the visitors per variant against an even split (a sample-ratio mismatch
means the assignment or its tracking is broken, and the comparison is not to be
trusted).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from nilemetrics.protocol import wire_time
from nilemetrics.protocol.names import EXPERIMENT_EVENT, PAGE_TYPE_PATTERN
from nilemetrics.server.tables import checkouts_t, events_t

#: Confidence of the intervals.
CONFIDENCE = 0.95
#: Below this p-value the split of visitors is reported as a sample-ratio mismatch
#: (the usual threshold: a real mismatch is rarely subtle).
SRM_P_VALUE = 0.001
_SLUG = re.compile(PAGE_TYPE_PATTERN)


class ExperimentError(ValueError):
    """The experiment or the goal asked for cannot be reported (one line for the user)."""


@dataclass(frozen=True, slots=True)
class Goal:
    """What counts as a conversion: ``paid``, ``checkout`` or ``event`` with its name."""

    kind: str
    event: str | None = None

    @classmethod
    def parse(cls, text: str) -> Goal:
        """``paid``, ``checkout`` or ``event:NAME``; anything else is an ExperimentError."""
        if text in ("paid", "checkout"):
            return cls(text)
        if text.startswith("event:") and _SLUG.match(text[len("event:"):]):
            return cls("event", text[len("event:"):])
        raise ExperimentError(
            f"--goal {text!r}: use paid, checkout or event:NAME (NAME a custom event's name)"
        )

    def __str__(self) -> str:
        return f"event:{self.event}" if self.kind == "event" else self.kind


def _assignments(
    conn: Connection, name: str, since: datetime, until: datetime
) -> list[tuple[str, str, str]]:
    """(visitor, variant, session) of every assignment to ``name`` in the period, oldest first."""
    e = events_t.c
    rows = conn.execute(
        select(e.session_id, e.payload)
        .where((e.name == EXPERIMENT_EVENT) & (e.occurred_at >= since) & (e.occurred_at < until))
        .order_by(e.occurred_at, e.id)
    ).all()
    found = []
    for session_id, payload in rows:
        props = (payload or {}).get("properties") or {}
        if props.get("experiment") != name or not isinstance(props.get("variant"), str):
            continue
        visitor = props.get("visitor")
        key = f"v:{visitor}" if isinstance(visitor, str | int) and visitor != "" else (
            f"s:{session_id}")
        found.append((key, props["variant"], str(session_id)))
    return found


def _converted_sessions(conn: Connection, goal: Goal, sessions: list[str]) -> set[str]:
    """Which of ``sessions`` reached the goal (at any time)."""
    out: set[str] = set()
    for start in range(0, len(sessions), 500):
        chunk = sessions[start:start + 500]
        if goal.kind == "event":
            e = events_t.c
            query = select(e.session_id).where((e.name == goal.event) & e.session_id.in_(chunk))
        else:
            c = checkouts_t.c
            query = select(c.session_id).where(c.session_id.in_(chunk))
            if goal.kind == "paid":
                query = query.where(c.completed_at.is_not(None))
        out.update(str(sid) for (sid,) in conn.execute(query.distinct()))
    return out


def _number(value: Any) -> float | None:
    number = float(value)
    return round(number, 6) if math.isfinite(number) else None


def _variant_row(
    variant: str, control: str, n: int, x: int, n0: int, x0: int, alpha: float
) -> dict[str, Any]:
    """One variant's figures; its difference to control unless it is the control."""
    from statsmodels.stats.proportion import (
        confint_proportions_2indep,
        proportion_confint,
        proportions_ztest,
    )

    row: dict[str, Any] = {
        "variant": variant, "control": variant == control, "visitors": n,
        "conversions": x, "rate": None, "rateLow": None, "rateHigh": None,
        "difference": None, "differenceLow": None, "differenceHigh": None, "pValue": None,
    }
    if not n:
        return row
    low, high = proportion_confint(x, n, alpha=alpha, method="wilson")
    row.update(rate=round(x / n, 6), rateLow=_number(low), rateHigh=_number(high))
    if variant == control or not n0:
        return row
    row["difference"] = round(x / n - x0 / n0, 6)
    d_low, d_high = confint_proportions_2indep(
        x, n, x0, n0, compare="diff", method="newcomb", alpha=alpha
    )
    row["differenceLow"], row["differenceHigh"] = _number(d_low), _number(d_high)
    if 0 < x + x0 < n + n0:
        # The pooled z-test is undefined when nobody or everybody converted.
        _z, p_value = proportions_ztest([x, x0], [n, n0])
        row["pValue"] = _number(p_value)
    return row


def experiment_report(
    conn: Connection,
    name: str,
    goal: Goal,
    since: datetime,
    until: datetime,
    control: str | None = None,
) -> dict[str, Any]:
    """Per variant visitors, conversions and rate (95% interval); difference to control
    with its interval and p-value; the sample-ratio check. JSON-ready, camelCase."""
    # Imported here: statsmodels and SciPy take a second to import, and only this needs them.
    from scipy.stats import chisquare

    assignments = _assignments(conn, name, since, until)
    if not assignments:
        raise ExperimentError(f"no assignments to experiment {name!r} in the period")
    variant_of: dict[str, str] = {}
    sessions_of: dict[str, set[str]] = {}
    in_several: set[str] = set()
    for visitor, variant, session in assignments:
        first = variant_of.setdefault(visitor, variant)
        if first != variant:
            # Counted in the first variant they saw: a visitor who cleared storage.
            in_several.add(visitor)
        sessions_of.setdefault(visitor, set()).add(session)
    order = list(dict.fromkeys(variant for _v, variant, _s in assignments))
    if control is None:
        control = "control" if "control" in order else order[0]
    elif control not in order:
        raise ExperimentError(
            f"--control {control!r}: experiment {name!r} has variants {', '.join(order)}"
        )
    order.remove(control)
    order.insert(0, control)
    converted_sessions = _converted_sessions(
        conn, goal, sorted({s for _v, _variant, s in assignments})
    )
    visitors = dict.fromkeys(order, 0)
    conversions = dict.fromkeys(order, 0)
    for visitor, variant in variant_of.items():
        visitors[variant] += 1
        if sessions_of[visitor] & converted_sessions:
            conversions[variant] += 1
    alpha = 1 - CONFIDENCE
    rows: list[dict[str, Any]] = []
    n0, x0 = visitors[control], conversions[control]
    with warnings.catch_warnings():
        # Degenerate inputs (nobody converted, a variant without visitors) give nan or
        # inf with a RuntimeWarning; those become null in the report.
        warnings.simplefilter("ignore", RuntimeWarning)
        for variant in order:
            rows.append(_variant_row(variant, control, visitors[variant],
                                     conversions[variant], n0, x0, alpha))
        srm: dict[str, Any] = {"pValue": None, "mismatch": False,
                               "expectedShare": round(1 / len(order), 6)}
        if len(order) > 1 and any(visitors.values()):
            _chi2, p_srm = chisquare([visitors[v] for v in order])
            srm["pValue"] = _number(p_srm)
            srm["mismatch"] = srm["pValue"] is not None and srm["pValue"] < SRM_P_VALUE
    return {
        "experiment": name,
        "goal": str(goal),
        "since": wire_time(since),
        "until": wire_time(until),
        "control": control,
        "confidence": CONFIDENCE,
        "variants": rows,
        "sampleRatio": srm,
        "visitorsInSeveralVariants": len(in_several),
    }
