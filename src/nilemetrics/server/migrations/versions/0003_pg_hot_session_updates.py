"""PostgreSQL: let the per-event session update be a HOT update.

Every page visit updates its session's ``last_activity`` and current page. On
PostgreSQL an update that changes any indexed column is never HOT (heap-only
tuple): it adds a new entry to *every* index of the table, eight on
``user_sessions``. ``ix_user_sessions_live`` indexed exactly those columns, so no
session update was ever HOT. On PostgreSQL it is replaced by a partial index of
the active sessions on ``session_id`` (which never changes): live counts and the
timeout cleanup still visit only the active sessions, reading their current page
and last activity from the table. ``fillfactor = 70`` leaves room on each page
for the new row versions, which a HOT update must place on the same page (pages
written before this migration keep their old fill until rewritten).

SQLite is left as it is: it rewrites only the indexes whose columns change, and
its live counts are answered from ``ix_user_sessions_live`` alone.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute('ALTER TABLE user_sessions SET (fillfactor = 70)')
    op.create_index(
        'ix_user_sessions_active',
        'user_sessions',
        ['session_id'],
        unique=False,
        postgresql_where=sa.text('is_active = true'),
    )
    op.drop_index('ix_user_sessions_live', table_name='user_sessions')


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.create_index(
        'ix_user_sessions_live',
        'user_sessions',
        ['last_activity', 'current_page_type', 'current_page_identifier'],
        unique=False,
        postgresql_where=sa.text('is_active = true'),
    )
    op.drop_index('ix_user_sessions_active', table_name='user_sessions')
    op.execute('ALTER TABLE user_sessions RESET (fillfactor)')
