"""Indexes for the operations commands.

Case-insensitive email and checkout user id (GDPR erasure and access), and a
page-visit index by page type and time that covers ``nilemetrics report``'s
time-on-page query. It replaces ``ix_page_visits_entered_at``, so the number of
indexes a page visit maintains stays the same. Sessions get an index on
``ended_at`` (it only grows at its end) for reports and purges.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain CREATE INDEX works on SQLite and PostgreSQL alike: no table rebuild needed.
    op.create_index(
        'ix_user_sessions_email_lower', 'user_sessions', [sa.text('lower(email)')], unique=False
    )
    op.create_index(
        'ix_checkout_sessions_email_lower',
        'checkout_sessions',
        [sa.text('lower(email)')],
        unique=False,
    )
    op.create_index(
        'ix_checkout_sessions_user_id', 'checkout_sessions', ['user_id'], unique=False
    )
    op.create_index(
        'ix_page_visits_type_time',
        'page_visits',
        ['page_type', 'entered_at', 'page_identifier', 'duration_seconds'],
        unique=False,
    )
    op.drop_index('ix_page_visits_entered_at', table_name='page_visits')
    op.create_index('ix_user_sessions_ended_at', 'user_sessions', ['ended_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_user_sessions_ended_at', table_name='user_sessions')
    op.create_index('ix_page_visits_entered_at', 'page_visits', ['entered_at'], unique=False)
    op.drop_index('ix_page_visits_type_time', table_name='page_visits')
    op.drop_index('ix_checkout_sessions_user_id', table_name='checkout_sessions')
    op.drop_index('ix_checkout_sessions_email_lower', table_name='checkout_sessions')
    op.drop_index('ix_user_sessions_email_lower', table_name='user_sessions')
