"""History rollups (``GET /history``, replay) and an index on when sessions started.

``metric_rollups``: one row per minute (kept 14 days) or hour (kept as long as
retention says) with the counts of what happened in it, the live sessions
sampled at its start and, for minutes, the live-metrics body then. Counts only:
no email, phone, IP or user agent, so erasure never needs to look here.

``ix_user_sessions_started_at``: the rollups count sessions started per minute,
and lookups list a person's sessions newest first. ``started_at`` is written once
and never updated, so the per-event session update stays HOT on PostgreSQL.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
_MONEY = sa.Numeric(14, 2).with_variant(sa.String(32), 'sqlite')


def upgrade() -> None:
    op.create_table('metric_rollups',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('resolution', sa.String(length=8), nullable=False),
    sa.Column('bucket_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('complete', sa.Boolean(), nullable=False),
    sa.Column('live_sessions', sa.Integer(), nullable=True),
    sa.Column('pages', _JSON, nullable=True),
    sa.Column('sessions_started', sa.Integer(), nullable=False),
    sa.Column('page_visits', sa.Integer(), nullable=False),
    sa.Column('checkouts_started', sa.Integer(), nullable=False),
    sa.Column('payment_errors', sa.Integer(), nullable=False),
    sa.Column('payment_errors_by_code', _JSON, nullable=True),
    sa.Column('payment_successes', sa.Integer(), nullable=False),
    sa.Column('amount_paid', _MONEY, nullable=True),
    sa.Column('amount_failed', _MONEY, nullable=True),
    sa.Column('live', _JSON, nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('resolution', 'bucket_start')
    )
    op.create_index('ix_user_sessions_started_at', 'user_sessions', ['started_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_user_sessions_started_at', table_name='user_sessions')
    op.drop_table('metric_rollups')
