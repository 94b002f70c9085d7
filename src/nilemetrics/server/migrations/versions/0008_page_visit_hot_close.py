"""Closing a page visit: found by one seek, and on PostgreSQL no index written (issue 16).

Every page visit closes its session's open visit: it sets ``exited_at``,
``duration_seconds`` and ``is_active``. Two indexes named those columns
(``ix_page_visits_open``, partial on ``is_active``, and the covering
``ix_page_visits_type_time`` with ``duration_seconds``), so on PostgreSQL no close
was a HOT update: each wrote a new entry into all four indexes of the table and
left a dead one behind in the open-visits index for later probes to step over;
closes cost the writer's PostgreSQL backend twice what inserts did.

A session's open visit is always its latest one (visits are appended in time
order, and each new one closes the one before), so it is found by one seek on the
new ``ix_page_visits_session (session_id, id)``, which also serves everything
``ix_page_visits_session_id`` served (it replaces it), and ``ix_page_visits_open``
goes. PostgreSQL: ``ix_page_visits_type_time`` loses ``duration_seconds`` (the
time-on-page report reads the durations from the rows of its period) and
``fillfactor = 70`` leaves room on each page for the closed row versions, which a
HOT update must place on the same page. SQLite keeps the covering index: it
rewrites only the indexes whose columns change, one entry per close, and its
time-on-page report over a million visits takes half the time with it.

Visits left open that are not their session's latest (none should exist; written
by a bug or by hand) are closed first, at the moment the session moved on, so the
rule holds for every stored visit.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from nilemetrics.server.column_types import UTCDateTime

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_VISITS = sa.table(
    'page_visits',
    sa.column('id', sa.BigInteger()),
    sa.column('session_id', sa.String()),
    sa.column('entered_at', UTCDateTime()),
    sa.column('exited_at', UTCDateTime()),
    sa.column('duration_seconds', sa.Float()),
    sa.column('is_active', sa.Boolean()),
)


def _close_stray_open_visits() -> None:
    """Close each open visit that a later visit of its session follows, when that began."""
    conn = op.get_bind()
    o, n = _VISITS.alias('o'), _VISITS.alias('n')
    next_at = (
        sa.select(sa.func.min(n.c.entered_at))
        .where((n.c.session_id == o.c.session_id) & (n.c.id > o.c.id))
        .scalar_subquery()
    )
    rows = conn.execute(
        sa.select(o.c.id, o.c.entered_at, next_at.label('next_at')).where(o.c.is_active == sa.true())
    ).all()
    closes = []
    for row in rows:
        if row.next_at is None:
            continue
        until = max(row.next_at, row.entered_at)
        closes.append({'b_id': row.id, 'exited_at': until,
                       'duration_seconds': (until - row.entered_at).total_seconds()})
    if closes:
        conn.execute(
            sa.update(_VISITS)
            .where(_VISITS.c.id == sa.bindparam('b_id'))
            .values(is_active=False, exited_at=sa.bindparam('exited_at'),
                    duration_seconds=sa.bindparam('duration_seconds')),
            closes,
        )


def upgrade() -> None:
    _close_stray_open_visits()
    op.create_index('ix_page_visits_session', 'page_visits', ['session_id', 'id'], unique=False)
    op.drop_index('ix_page_visits_session_id', table_name='page_visits')
    op.drop_index('ix_page_visits_open', table_name='page_visits')
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_index('ix_page_visits_type_time', table_name='page_visits')
        op.create_index('ix_page_visits_type_time', 'page_visits',
                        ['page_type', 'entered_at', 'page_identifier'], unique=False)
        op.execute('ALTER TABLE page_visits SET (fillfactor = 70)')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE page_visits RESET (fillfactor)')
        op.drop_index('ix_page_visits_type_time', table_name='page_visits')
        op.create_index('ix_page_visits_type_time', 'page_visits',
                        ['page_type', 'entered_at', 'page_identifier', 'duration_seconds'],
                        unique=False)
    op.create_index('ix_page_visits_open', 'page_visits', ['session_id'], unique=False,
                    sqlite_where=sa.text('is_active = 1'),
                    postgresql_where=sa.text('is_active = true'))
    op.create_index('ix_page_visits_session_id', 'page_visits', ['session_id'], unique=False)
    op.drop_index('ix_page_visits_session', table_name='page_visits')
