"""Custom events and app sessions: ``events.name`` (indexed), sessions' platform (issue 15).

``events.name`` is a custom event's name (``track/event``), null for every other
event type. Two partial indexes (``WHERE name IS NOT NULL``) serve the reports
(by name and time) and the live counts of the last minutes (by time): the other
events, nearly all of the log, add nothing to them.

``user_sessions.platform`` (web, ios, android, other; null for sessions started
before, counted as web) and ``app_version``, from ``session/start``. Not indexed:
the live counts read them from the active sessions they already visit.

Self-contained: it only adds a column and indexes, so it can follow any revision
(chained after 0006 when main was merged in).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('user_sessions') as batch:
        batch.add_column(sa.Column('platform', sa.String(length=16), nullable=True))
        batch.add_column(sa.Column('app_version', sa.String(length=64), nullable=True))
    with op.batch_alter_table('events') as batch:
        batch.add_column(sa.Column('name', sa.String(length=64), nullable=True))
    op.create_index('ix_events_name', 'events', ['name', 'occurred_at'], unique=False,
                    sqlite_where=sa.text('name IS NOT NULL'),
                    postgresql_where=sa.text('name IS NOT NULL'))
    op.create_index('ix_events_named_time', 'events', ['occurred_at', 'name'], unique=False,
                    sqlite_where=sa.text('name IS NOT NULL'),
                    postgresql_where=sa.text('name IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_events_named_time', table_name='events')
    op.drop_index('ix_events_name', table_name='events')
    with op.batch_alter_table('events') as batch:
        batch.drop_column('name')
    with op.batch_alter_table('user_sessions') as batch:
        batch.drop_column('app_version')
        batch.drop_column('platform')
