"""History rollups: what happened per minute (and per hour), kept without personal data.

The leader maintains them (``services.rollups``) at the cost of a few index range
counts a minute, nothing on the ingestion path:

- at the start of each minute it *samples* the live numbers into that minute's row
  (live sessions per page type, and the whole live-metrics body, for replay);
- once a minute is over (plus ``SETTLE`` seconds for batches still being written)
  it *counts* what happened in it from the source tables: sessions started, page
  visits, checkouts started, payment errors per code, successes, amounts. Minutes
  missed while no server ran are counted at the next start (their live samples
  are simply absent);
- each completed hour is *folded* into an hour row; minute rows older than
  ``MINUTE_RETENTION`` are deleted, hour rows stay until ``cleanup
  --purge-older-than`` removes them.

``history`` reads them back as buckets of any step, counting the minutes not yet
rolled up straight from the source tables, so an answer is never behind.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Connection,
    Integer,
    cast,
    delete,
    func,
    insert,
    select,
    true,
    type_coerce,
    update,
)

from nilemetrics.protocol.history import STEP_SECONDS, HistoryOut, HistoryPoint, Step
from nilemetrics.protocol.pushed import LiveMetrics
from nilemetrics.server.live import snapshot, wire_amount
from nilemetrics.server.reports import page_types
from nilemetrics.server.tables import (
    checkouts_t,
    errors_t,
    rollups_t,
    sessions_t,
    visits_t,
)

MINUTE = 60
HOUR = 3600
MINUTE_ROW = "minute"
HOUR_ROW = "hour"
_WIDTH = {MINUTE_ROW: MINUTE, HOUR_ROW: HOUR}

#: How long minute rows are kept; older history is only per hour.
MINUTE_RETENTION = timedelta(days=14)
#: Seconds after a minute's end before it is counted (batches still being written).
SETTLE = 5.0
#: Most minutes counted in one transaction while catching up (short write locks).
CATCH_UP_MINUTES = 360
#: Most buckets one history answer may have.
MAX_BUCKETS = 5000

_ZERO = Decimal("0.00")
#: Every rollup column but the replay body (large, and only the snapshot endpoint needs it).
_FIGURES = tuple(c for c in rollups_t.columns if c.name != "live")
_LEAN = tuple(
    type_coerce(c, JSON).label(c.name) if c.name in ("pages", "payment_errors_by_code") else c
    for c in _FIGURES
    if c.name not in ("id", "resolution", "bucket_start", "complete")
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def floor_time(at: datetime, width: int) -> datetime:
    """The start of the ``width``-second bucket (aligned on the Unix epoch) holding ``at``."""
    seconds = int((at - _EPOCH).total_seconds() // width) * width
    return _EPOCH + timedelta(seconds=seconds)


@dataclass
class Figures:
    """What happened in one bucket (the counted part of a rollup row)."""

    sessions_started: int = 0
    page_visits: int = 0
    checkouts_started: int = 0
    payment_errors: int = 0
    by_code: dict[str, int] = field(default_factory=dict)
    payment_successes: int = 0
    amount_paid: Decimal = _ZERO
    amount_failed: Decimal = _ZERO

    def add(self, other: Figures) -> None:
        """Add another bucket's figures to these."""
        self.sessions_started += other.sessions_started
        self.page_visits += other.page_visits
        self.checkouts_started += other.checkouts_started
        self.payment_errors += other.payment_errors
        for code, n in other.by_code.items():
            self.by_code[code] = self.by_code.get(code, 0) + n
        self.payment_successes += other.payment_successes
        self.amount_paid += other.amount_paid
        self.amount_failed += other.amount_failed

    def columns(self) -> dict[str, Any]:
        """The rollup columns holding these figures."""
        return {
            "sessions_started": self.sessions_started,
            "page_visits": self.page_visits,
            "checkouts_started": self.checkouts_started,
            "payment_errors": self.payment_errors,
            "payment_errors_by_code": _ranked(self.by_code),
            "payment_successes": self.payment_successes,
            "amount_paid": self.amount_paid,
            "amount_failed": self.amount_failed,
        }

    @classmethod
    def of_row(cls, row: Any) -> Figures:
        """The figures of a rollup row."""
        return cls(
            sessions_started=row.sessions_started,
            page_visits=row.page_visits,
            checkouts_started=row.checkouts_started,
            payment_errors=row.payment_errors,
            by_code=dict(row.payment_errors_by_code or {}),
            payment_successes=row.payment_successes,
            amount_paid=row.amount_paid or _ZERO,
            amount_failed=row.amount_failed or _ZERO,
        )


def _ranked(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _bucket(conn: Connection, column: Any, width: int) -> ColumnElement[Any]:
    """The number of the ``width``-second bucket a timestamp column falls in (SQL)."""
    if conn.dialect.name == "postgresql":
        return cast(func.floor(func.extract("epoch", column) / width), Integer)
    # SQLite keeps naive UTC text; strftime('%s') reads it as UTC seconds.
    return cast(func.strftime("%s", column), Integer) / width


def _start_of(number: Any, width: int) -> datetime:
    return _EPOCH + timedelta(seconds=int(number) * width)


def source_figures(
    conn: Connection, start: datetime, end: datetime, width: int
) -> dict[datetime, Figures]:
    """What happened in ``[start, end)``, per ``width``-second bucket, from the source tables.

    Every count is an index range: sessions by ``started_at``, page visits by
    ``(page_type, entered_at)`` one page type at a time (no extra index on the
    hottest table), checkouts by ``started_at`` and ``completed_at``, payment
    errors by ``occurred_at``. Buckets where nothing happened are absent.
    """
    out: dict[datetime, Figures] = {}

    def at(number: Any) -> Figures:
        return out.setdefault(_start_of(number, width), Figures())

    s, v, c, e = sessions_t.c, visits_t.c, checkouts_t.c, errors_t.c
    bucket = _bucket(conn, s.started_at, width)
    for number, n in conn.execute(
        select(bucket, func.count())
        .where((s.started_at >= start) & (s.started_at < end))
        .group_by(bucket)
    ):
        at(number).sessions_started += n
    bucket = _bucket(conn, v.entered_at, width)
    for page_type in page_types(conn):
        for number, n in conn.execute(
            select(bucket, func.count())
            .where((v.page_type == page_type) & (v.entered_at >= start) & (v.entered_at < end))
            .group_by(bucket)
        ):
            at(number).page_visits += n
    bucket = _bucket(conn, c.started_at, width)
    for number, n in conn.execute(
        select(bucket, func.count())
        .where((c.started_at >= start) & (c.started_at < end))
        .group_by(bucket)
    ):
        at(number).checkouts_started += n
    # Amounts in Python: SQLite keeps them as exact text, and there are few of these rows.
    bucket = _bucket(conn, c.completed_at, width)
    for number, amount in conn.execute(
        select(bucket, c.total_amount).where((c.completed_at >= start) & (c.completed_at < end))
    ):
        figures = at(number)
        figures.payment_successes += 1
        figures.amount_paid += amount or _ZERO
    bucket = _bucket(conn, e.occurred_at, width)
    for number, code, amount, total in conn.execute(
        select(bucket, e.error_code, e.amount, c.total_amount)
        .select_from(errors_t.outerjoin(checkouts_t, c.id == e.checkout_id))
        .where((e.occurred_at >= start) & (e.occurred_at < end))
    ):
        figures = at(number)
        figures.payment_errors += 1
        key = code or "(none)"
        figures.by_code[key] = figures.by_code.get(key, 0) + 1
        # The attempt's own amount, else its checkout's (as the error table shows it).
        figures.amount_failed += amount if amount is not None else (total or _ZERO)
    return out


# --- maintaining the rollups (the leader's job) -------------------------------------------


def sample_live(conn: Connection, now: datetime, live_window: float) -> bool:
    """Store the live numbers now in this minute's row, once per minute; True if stored.

    The row is created here (counts zero, not complete); counting fills it later.
    """
    minute = floor_time(now, MINUTE)
    r = rollups_t.c
    row = conn.execute(
        select(r.id, r.live_sessions)
        .where((r.resolution == MINUTE_ROW) & (r.bucket_start == minute))
    ).first()
    if row is not None and row.live_sessions is not None:
        return False
    metrics = snapshot(conn, now, live_window)
    live = {
        "live_sessions": metrics.live_sessions,
        "pages": dict(metrics.pages),
        "live": metrics.model_dump(mode="json", by_alias=True),
    }
    if row is None:
        conn.execute(insert(rollups_t).values(
            resolution=MINUTE_ROW, bucket_start=minute, complete=False, **Figures().columns(),
            **live,
        ))
    else:  # counted before it was sampled (a catch-up ran first): keep the counts
        conn.execute(update(rollups_t).where(r.id == row.id).values(**live))
    return True


def has_work(conn: Connection, now: datetime) -> bool:
    """Whether this minute is not sampled yet or a finished minute is not counted yet."""
    r = rollups_t.c
    sampled = conn.execute(
        select(r.live_sessions).where(
            (r.resolution == MINUTE_ROW) & (r.bucket_start == floor_time(now, MINUTE))
        )
    ).scalar_one_or_none()
    if sampled is None:
        return True
    until = counted_until(conn)
    return until is None or until < floor_time(now - timedelta(seconds=SETTLE), MINUTE)


def counted_until(conn: Connection) -> datetime | None:
    """The end of the last minute counted, or None before the first count."""
    r = rollups_t.c
    latest = conn.execute(
        select(func.max(r.bucket_start))
        .where((r.resolution == MINUTE_ROW) & (r.complete == true()))
    ).scalar_one()
    return None if latest is None else _aware(latest) + timedelta(seconds=MINUTE)


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _first_time(conn: Connection) -> datetime | None:
    """The oldest session's start, or the oldest live sample if older (None: neither)."""
    s, r = sessions_t.c, rollups_t.c
    found = [
        _aware(at)
        for at in (
            conn.execute(select(func.min(s.started_at))).scalar_one(),
            conn.execute(
                select(func.min(r.bucket_start)).where(r.resolution == MINUTE_ROW)
            ).scalar_one(),
        )
        if at is not None
    ]
    return min(found) if found else None


def count_minutes(conn: Connection, now: datetime) -> tuple[datetime, datetime] | None:
    """Count the next finished minutes (at most ``CATCH_UP_MINUTES``); the range counted.

    None when every finished minute is counted. The first count starts at the
    oldest session, at most ``MINUTE_RETENTION`` ago; anything older is counted
    straight into hour rows.
    """
    end_limit = floor_time(now - timedelta(seconds=SETTLE), MINUTE)
    start = counted_until(conn)
    if start is None:
        oldest = floor_time(now - MINUTE_RETENTION, HOUR)
        first = _first_time(conn)
        if first is None:
            start = end_limit - timedelta(seconds=MINUTE)
        else:
            if first < oldest:
                _count_old_hours(conn, floor_time(first, HOUR), oldest)
            start = max(floor_time(first, MINUTE), oldest)
    if start >= end_limit:
        return None
    end = min(end_limit, start + timedelta(seconds=MINUTE * CATCH_UP_MINUTES))
    figures = source_figures(conn, start, end, MINUTE)
    r = rollups_t.c
    existing = {
        _aware(at): row_id
        for row_id, at in conn.execute(
            select(r.id, r.bucket_start).where(
                (r.resolution == MINUTE_ROW) & (r.bucket_start >= start) & (r.bucket_start < end)
            )
        )
    }
    new_rows: list[dict[str, Any]] = []
    updates: list[tuple[int, dict[str, Any]]] = []
    minute = start
    while minute < end:
        columns = figures.get(minute, Figures()).columns()
        if minute in existing:
            updates.append((existing[minute], columns))
        else:
            new_rows.append({"resolution": MINUTE_ROW, "bucket_start": minute, "complete": True,
                             "live_sessions": None, "pages": None, "live": None, **columns})
        minute += timedelta(seconds=MINUTE)
    for row_id, columns in updates:
        conn.execute(update(rollups_t).where(r.id == row_id).values(complete=True, **columns))
    if new_rows:
        conn.execute(insert(rollups_t), new_rows)
    return start, end


def _count_old_hours(conn: Connection, start: datetime, end: datetime) -> None:
    """Hour rows for history older than the minute rows keep (a first count on old data)."""
    figures = source_figures(conn, start, end, HOUR)
    # Live samples taken before anything was counted (a server that sampled, then
    # stopped before a minute was over) still count for their hour.
    r = rollups_t.c
    live: dict[datetime, _Bucket] = {}
    for row in conn.execute(
        select(r.bucket_start, r.live_sessions, r.pages).where(
            (r.resolution == MINUTE_ROW) & (r.bucket_start >= start) & (r.bucket_start < end)
            & r.live_sessions.is_not(None)
        )
    ):
        hour = floor_time(_aware(row.bucket_start), HOUR)
        figures.setdefault(hour, Figures())
        _add_live(live.setdefault(hour, _Bucket()), row)
    rows = [
        {"resolution": HOUR_ROW, "bucket_start": hour, "complete": True,
         "live_sessions": live[hour].live if hour in live else None,
         "pages": _ranked(live[hour].pages) if hour in live else None, "live": None,
         **found.columns()}
        for hour, found in sorted(figures.items())
    ]
    if rows:
        conn.execute(insert(rollups_t), rows)


def fold_hours(conn: Connection) -> int:
    """Fold every counted, complete hour without an hour row into one; hours folded."""
    until = counted_until(conn)
    if until is None:
        return 0
    r = rollups_t.c
    last_hour = conn.execute(
        select(func.max(r.bucket_start)).where(r.resolution == HOUR_ROW)
    ).scalar_one()
    if last_hour is not None:
        start = _aware(last_hour) + timedelta(seconds=HOUR)
    else:
        first = conn.execute(
            select(func.min(r.bucket_start)).where(r.resolution == MINUTE_ROW)
        ).scalar_one()
        if first is None:
            return 0
        start = floor_time(_aware(first), HOUR)
    end = floor_time(until, HOUR)
    if start >= end:
        return 0
    hours: dict[datetime, tuple[Figures, int | None, dict[str, int]]] = {}
    for row in conn.execute(
        select(*_FIGURES).where(
            (r.resolution == MINUTE_ROW) & (r.bucket_start >= start) & (r.bucket_start < end)
        )
    ):
        hour = floor_time(_aware(row.bucket_start), HOUR)
        figures, live, pages = hours.setdefault(hour, (Figures(), None, {}))
        figures.add(Figures.of_row(row))
        if row.live_sessions is not None:
            live = max(live or 0, row.live_sessions)
            _max_into(pages, row.pages or {})
        hours[hour] = (figures, live, pages)
    rows = [
        {"resolution": HOUR_ROW, "bucket_start": hour, "complete": True, "live_sessions": live,
         "pages": _ranked(pages) if live is not None else None, "live": None,
         **figures.columns()}
        for hour, (figures, live, pages) in sorted(hours.items())
    ]
    # An hour with no minute row at all (the server was down all of it) gets a row
    # too, so the next fold starts after it.
    hour = start
    while hour < end:
        if hour not in hours:
            rows.append({"resolution": HOUR_ROW, "bucket_start": hour, "complete": True,
                         "live_sessions": None, "pages": None, "live": None,
                         **Figures().columns()})
        hour += timedelta(seconds=HOUR)
    conn.execute(insert(rollups_t), rows)
    return len(rows)


def _max_into(into: dict[str, int], pages: dict[str, Any]) -> None:
    for page_type, n in pages.items():
        if isinstance(n, int):
            into[page_type] = max(into.get(page_type, 0), n)


def drop_old_minutes(conn: Connection, now: datetime) -> int:
    """Delete minute rows older than ``MINUTE_RETENTION`` whose hour is folded; rows deleted."""
    r = rollups_t.c
    cutoff = floor_time(now - MINUTE_RETENTION, HOUR)
    folded_until = conn.execute(
        select(func.max(r.bucket_start)).where(r.resolution == HOUR_ROW)
    ).scalar_one()
    if folded_until is None:
        return 0
    cutoff = min(cutoff, _aware(folded_until) + timedelta(seconds=HOUR))
    return int(conn.execute(
        delete(rollups_t).where((r.resolution == MINUTE_ROW) & (r.bucket_start < cutoff))
    ).rowcount)


# --- reading them back -----------------------------------------------------------------


@dataclass
class _Bucket:
    figures: Figures = field(default_factory=Figures)
    live: int | None = None
    pages: dict[str, int] = field(default_factory=dict)


class HistoryRangeError(ValueError):
    """The asked range cannot be answered (the message says why, naming the parameter)."""


def history_buckets(since: datetime, until: datetime, step: Step) -> tuple[datetime, datetime, int]:
    """The aligned range ``[start, end)`` covering ``[since, until)`` and its bucket count."""
    width = STEP_SECONDS[step]
    if until <= since:
        raise HistoryRangeError("until: must be after since")
    start = floor_time(since, width)
    end = floor_time(until, width)
    if end < until:
        end += timedelta(seconds=width)
    count = int((end - start).total_seconds()) // width
    if count > MAX_BUCKETS:
        raise HistoryRangeError(
            f"step: {count} buckets of {step.value} from since to until; at most {MAX_BUCKETS} "
            "(choose a larger step or a shorter range)"
        )
    return start, end, count


def history(
    conn: Connection, since: datetime, until: datetime, step: Step, now: datetime
) -> HistoryOut:
    """Every bucket of ``step`` from ``since`` to ``until``, oldest first, zeros where empty.

    Steps of an hour or more read hour rows where they exist; finer steps read
    minute rows (and hour rows for history older than the minute rows keep,
    each counted in the bucket where its hour starts). Minutes not counted yet
    are counted from the source tables on the spot.
    """
    start, end, count = history_buckets(since, until, step)
    width = STEP_SECONDS[step]
    buckets = [_Bucket() for _ in range(count)]

    def into(at: datetime) -> _Bucket | None:
        index = int((at - start).total_seconds()) // width
        return buckets[index] if 0 <= index < count else None

    r = rollups_t.c
    hour_start = floor_time(start, HOUR)
    hour_rows = list(conn.execute(
        select(*_FIGURES).where(
            (r.resolution == HOUR_ROW) & (r.bucket_start >= hour_start) & (r.bucket_start < end)
        ).order_by(r.bucket_start)
    ))
    if width >= HOUR:
        # Hour rows up to the last folded hour; minute rows only after it.
        minutes_from = (
            _aware(hour_rows[-1].bucket_start) + timedelta(seconds=HOUR) if hour_rows else start
        )
        minutes_from = max(minutes_from, start)
        used_hours = hour_rows
    else:
        first_minute = conn.execute(
            select(func.min(r.bucket_start)).where(r.resolution == MINUTE_ROW)
        ).scalar_one()
        minutes_from = start
        # Only where no minute rows are left (folded away).
        limit = _aware(first_minute) if first_minute is not None else end
        used_hours = [row for row in hour_rows if _aware(row.bucket_start) < limit]
    for row in used_hours:
        _add_row(into(max(_aware(row.bucket_start), start)), row)
    if minutes_from < end:
        # Up to 5,000 rows: read lean (the minute as a number, JSON without the text
        # policy's walk: these rows were written by the server from cleaned values).
        for row in conn.execute(
            select(_bucket(conn, r.bucket_start, MINUTE).label("number"), *_LEAN).where(
                (r.resolution == MINUTE_ROW) & (r.bucket_start >= minutes_from)
                & (r.bucket_start < end)
            )
        ):
            _add_row(into(_start_of(row.number, MINUTE)), row)
    # The minutes after the last count, straight from the source tables.
    counted = counted_until(conn)
    tail = max(minutes_from, counted) if counted is not None else minutes_from
    if tail < end:
        for at, figures in source_figures(conn, tail, min(end, now + timedelta(seconds=1)),
                                          MINUTE).items():
            target = into(at)
            if target is not None:
                target.figures.add(figures)
    points = [_point(start + timedelta(seconds=i * width), b) for i, b in enumerate(buckets)]
    return HistoryOut(since=start, until=end, step=step, points=points)


def _add_row(target: _Bucket | None, row: Any) -> None:
    if target is None:
        return
    target.figures.add(Figures.of_row(row))
    _add_live(target, row)


def _add_live(target: _Bucket, row: Any) -> None:
    if row.live_sessions is not None:
        target.live = max(target.live or 0, row.live_sessions)
        _max_into(target.pages, row.pages or {})


def _point(at: datetime, bucket: _Bucket) -> HistoryPoint:
    f = bucket.figures
    return HistoryPoint(
        at=at,
        live_sessions=bucket.live or 0,
        pages=_ranked(bucket.pages),
        sessions_started=f.sessions_started,
        page_visits=f.page_visits,
        checkouts_started=f.checkouts_started,
        payment_errors=f.payment_errors,
        payment_errors_by_code=_ranked(f.by_code),
        payment_successes=f.payment_successes,
        amount_paid=wire_amount(f.amount_paid) or 0.0,
        amount_failed=wire_amount(f.amount_failed) or 0.0,
    )


def live_at(conn: Connection, at: datetime) -> LiveMetrics | None:
    """The live-metrics body sampled in the minute holding ``at``; None if none was."""
    r = rollups_t.c
    stored = conn.execute(
        select(r.live).where(
            (r.resolution == MINUTE_ROW) & (r.bucket_start == floor_time(at, MINUTE))
        )
    ).scalar_one_or_none()
    return None if stored is None else LiveMetrics.model_validate(stored)


def rollup_columns() -> Iterable[str]:
    """The column names of the rollups table (tests check that none is personal)."""
    return [column.name for column in rollups_t.columns]
