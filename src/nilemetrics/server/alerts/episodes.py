"""Episodes of a rule: ok -> pending (holding for ``for``) -> firing -> ok, stored per rule.

One evaluation tick reads every rule's value, moves its state on and queues the
notifications the move causes, all in one transaction: a state change and its
notification are stored together or not at all (a crash in between loses
neither, and a restart continues the episode instead of starting a new one).

"Once across processes": on PostgreSQL the tick first takes a transaction-level
advisory lock with its own key (``pg_try_advisory_xact_lock``); a process that
does not get it skips the tick, as another one is evaluating right now. On
SQLite the tick's transaction is ``BEGIN IMMEDIATE``, which serialises writers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from nilemetrics.protocol import wire_time
from nilemetrics.server.alerts.messages import Kind, compose
from nilemetrics.server.alerts.rules import AlertsConfig, Rule
from nilemetrics.server.alerts.values import (
    codes_window,
    metric_value,
    recent_error_ids,
    top_error_codes,
)
from nilemetrics.server.tables import alert_outbox_t, alert_state_t

#: Key of the advisory lock one evaluation tick holds (PostgreSQL), distinct from the
#: migration (…862), snapshot (…863) and leadership (…864) locks: sharing the
#: leader's key made every tick skip while a leader held it.
EVALUATION_LOCK_KEY = 7_305_441_865

#: Sent and dropped notifications are kept this long (for ``alerts list`` and audits).
OUTBOX_KEEP = timedelta(days=30)

STATES = ("ok", "pending", "firing")


@dataclass(frozen=True, slots=True)
class Episode:
    """A rule's stored state."""

    rule: str
    state: str
    since: datetime
    pending_since: datetime | None = None
    value: float | None = None
    episode: int = 0
    last_notified_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> Episode:
        """From an ``alert_state`` row."""
        return cls(
            rule=row.rule, state=row.state, since=row.since, pending_since=row.pending_since,
            value=row.value, episode=row.episode, last_notified_at=row.last_notified_at,
        )


def step(rule: Rule, current: Episode | None, value: float | None,
         now: datetime) -> tuple[Episode, Kind | None]:
    """The rule's next state for ``value`` at ``now``, and the notification it causes.

    One firing notification per episode; while it holds, a repeat only if the rule
    has ``repeat`` and that long has passed since the last one; a resolved one when
    it clears. A condition that clears before ``for`` has passed notifies nobody.
    """
    if current is None:
        current = Episode(rule=rule.name, state="ok", since=now)
    st = replace(current, value=value)
    if rule.holds(value):
        if st.state == "firing":
            last = st.last_notified_at or st.since
            if rule.repeat is not None and (now - last).total_seconds() >= rule.repeat:
                return replace(st, last_notified_at=now), "repeat"
            return st, None
        began = st.pending_since if st.state == "pending" and st.pending_since else now
        if (now - began).total_seconds() >= rule.hold:
            return replace(st, state="firing", since=now, pending_since=began,
                           episode=st.episode + 1, last_notified_at=now), "firing"
        if st.state != "pending":
            return replace(st, state="pending", since=now, pending_since=now), None
        return st, None
    if st.state == "firing":
        return replace(st, state="ok", since=now, pending_since=None,
                       last_notified_at=now), "resolved"
    if st.state == "pending":
        return replace(st, state="ok", since=now, pending_since=None), None
    return st, None


@dataclass(slots=True)
class TickResult:
    """What one evaluation tick did."""

    skipped: bool = False
    queued: int = 0
    #: Rules whose state changed between ok / pending / firing.
    changed: list[str] = field(default_factory=list)
    values: dict[str, float | None] = field(default_factory=dict)


def rule_values(conn: Connection, config: AlertsConfig, now: datetime,
                live_window: float) -> dict[str, float | None]:
    """Every rule's value at ``now`` (read only)."""
    return {rule.name: metric_value(conn, rule, now, live_window) for rule in config.rules}


def evaluate(
    conn: Connection, config: AlertsConfig, now: datetime, live_window: float,
    values: dict[str, float | None] | None = None,
) -> TickResult:
    """One evaluation tick in the caller's (write) transaction.

    ``values``: the rules' values read just before (SQLite reads them outside the
    write transaction, so the writer is never kept waiting while they are counted).
    """
    if conn.dialect.name == "postgresql":
        got = conn.execute(
            text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": EVALUATION_LOCK_KEY}
        ).scalar_one()
        if not got:
            return TickResult(skipped=True)
    a = alert_state_t.c
    stored = {row.rule: row for row in conn.execute(select(alert_state_t))}
    names = {rule.name for rule in config.rules}
    gone = [name for name in stored if name not in names]
    if gone:
        # Rules taken out of the file: their state goes (their sent history stays).
        conn.execute(delete(alert_state_t).where(a.rule.in_(gone)))
    result = TickResult()
    for rule in config.rules:
        row = stored.get(rule.name)
        current = Episode.from_row(row) if row is not None else None
        value = values[rule.name] if values is not None else metric_value(
            conn, rule, now, live_window)
        result.values[rule.name] = value
        new, kind = step(rule, current, value, now)
        if kind == "firing":
            # Episode numbers never repeat for a rule, even after it was removed and
            # added back (its old notifications are still in the outbox).
            new = replace(new, episode=max(new.episode, _last_episode(conn, rule.name) + 1))
        _store(conn, rule, new, now, exists=row is not None)
        if current is None or current.state != new.state:
            result.changed.append(rule.name)
        if kind is not None:
            began = current.since if kind == "resolved" and current is not None else None
            result.queued += queue(conn, config, rule, kind, new, now, firing_since=began)
    conn.execute(
        delete(alert_outbox_t).where(
            (alert_outbox_t.c.status != "pending")
            & (alert_outbox_t.c.created_at < now - OUTBOX_KEEP)
        )
    )
    return result


def _last_episode(conn: Connection, rule: str) -> int:
    o = alert_outbox_t.c
    last = conn.execute(select(func.max(o.episode)).where(o.rule == rule)).scalar_one()
    return int(last or 0)


def _store(conn: Connection, rule: Rule, st: Episode, now: datetime, *, exists: bool) -> None:
    values = {
        "metric": rule.metric, "direction": rule.direction, "threshold": rule.threshold,
        "window_seconds": rule.window, "state": st.state, "since": st.since,
        "pending_since": st.pending_since, "value": st.value, "episode": st.episode,
        "last_notified_at": st.last_notified_at, "evaluated_at": now,
    }
    if exists:
        conn.execute(update(alert_state_t).where(alert_state_t.c.rule == rule.name)
                     .values(**values))
    else:
        conn.execute(insert(alert_state_t).values(rule=rule.name, **values))


def queue(conn: Connection, config: AlertsConfig, rule: Rule, kind: Kind, st: Episode,
          now: datetime, *, firing_since: datetime | None = None) -> int:
    """Queue ``kind`` of ``rule`` for each of its notifiers' URLs; return how many rows.

    ``firing_since``: when the episode a resolved notification ends began firing.
    """
    span = codes_window(rule)
    codes = top_error_codes(conn, now - timedelta(seconds=span))
    since = st.since if kind in ("firing", "repeat") else firing_since
    message = compose(rule, kind, value=st.value, now=now, since=since, episode=st.episode,
                      codes=codes, codes_window=span)
    contact_ids = (
        recent_error_ids(conn, now - timedelta(seconds=span), rule.error_code)
        if rule.include_contacts and kind != "resolved" else None
    )
    stamp = wire_time(now) if kind == "repeat" else ""
    rows = []
    for name in rule.notify:
        for target, _url in enumerate(config.notifiers[name].urls):
            parts = "\x00".join((rule.name, str(st.episode), kind, stamp, name, str(target)))
            rows.append({
                "dedupe_key": hashlib.sha256(parts.encode()).hexdigest(),
                "rule": rule.name, "kind": kind, "episode": st.episode, "notifier": name,
                "target": target, "title": message.title[:512], "body": message.body[:8192],
                "notify_type": message.notify_type, "contact_error_ids": contact_ids,
                "status": "pending", "attempts": 0, "created_at": now,
                "next_attempt_at": now,
            })
    if not rows:
        return 0
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    # The same notification is never queued twice, whatever happens (unique key).
    stmt = dialect.insert(alert_outbox_t).on_conflict_do_nothing(index_elements=["dedupe_key"])
    return sum(max(conn.execute(stmt.values(**row)).rowcount, 0) for row in rows)


def firing_alerts(conn: Connection) -> list[dict[str, Any]]:
    """The rules firing now, longest first, as the ``alerts`` of a ``metrics-update``."""
    a = alert_state_t.c
    rows = conn.execute(
        select(a.rule, a.metric, a.value, a.threshold, a.direction, a.window_seconds, a.since)
        .where(a.state == "firing")
        .order_by(a.since, a.rule)
    ).all()
    return [
        {"rule": row.rule, "metric": row.metric, "value": row.value,
         "threshold": row.threshold, "direction": row.direction,
         "windowSeconds": row.window_seconds, "since": wire_time(row.since)}
        for row in rows
    ]
