"""Initial schema: sessions, page visits, checkouts, payment errors, live metrics, events, audit.

Revision ID: 0001
Revises: 
Create Date: 2026-11-24
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('subject_hash', sa.String(length=128), nullable=True),
    sa.Column('details', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('performed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('checkout_sessions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('session_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=255), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('phone', sa.String(length=64), nullable=True),
    sa.Column('checkout_items', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('total_amount', sa.Numeric(14, 2).with_variant(sa.String(32), 'sqlite'), nullable=True),
    sa.Column('payment_method', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('error_count', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('payment_started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('payment_error_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('checkout_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_checkout_sessions_completed_at'), ['completed_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_checkout_sessions_email'), ['email'], unique=False)
        batch_op.create_index(batch_op.f('ix_checkout_sessions_payment_error_at'), ['payment_error_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_checkout_sessions_phone'), ['phone'], unique=False)
        batch_op.create_index(batch_op.f('ix_checkout_sessions_session_id'), ['session_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_checkout_sessions_started_at'), ['started_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_checkout_sessions_status'), ['status'], unique=False)

    op.create_table('events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('event_type', sa.String(length=32), nullable=False),
    sa.Column('session_id', sa.String(length=36), nullable=True),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id')
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_events_occurred_at'), ['occurred_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_events_session_id'), ['session_id'], unique=False)

    op.create_table('live_metrics',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('metric_type', sa.String(length=32), nullable=False),
    sa.Column('metric_identifier', sa.String(length=255), nullable=False),
    sa.Column('active_users_count', sa.Integer(), nullable=False),
    sa.Column('last_updated', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('metric_type', 'metric_identifier')
    )
    op.create_table('page_visits',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('session_id', sa.String(length=36), nullable=False),
    sa.Column('page_type', sa.String(length=32), nullable=False),
    sa.Column('page_identifier', sa.String(length=255), nullable=True),
    sa.Column('page_url', sa.String(length=2048), nullable=True),
    sa.Column('entered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('exited_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('duration_seconds', sa.Float(), nullable=True),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('page_visits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_page_visits_entered_at'), ['entered_at'], unique=False)
        batch_op.create_index('ix_page_visits_open', ['session_id'], unique=False, sqlite_where=sa.text('is_active = 1'), postgresql_where=sa.text('is_active = true'))
        batch_op.create_index(batch_op.f('ix_page_visits_session_id'), ['session_id'], unique=False)

    op.create_table('payment_errors',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('checkout_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('session_id', sa.String(length=36), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('error_code', sa.String(length=255), nullable=True),
    sa.Column('error_message', sa.String(length=2048), nullable=True),
    sa.Column('error_details', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('amount', sa.Numeric(14, 2).with_variant(sa.String(32), 'sqlite'), nullable=True),
    sa.Column('payment_method', sa.String(length=64), nullable=True),
    sa.Column('page_url', sa.String(length=2048), nullable=True),
    sa.Column('ip_address', sa.String(length=45), nullable=True),
    sa.Column('user_agent', sa.String(length=1024), nullable=True),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('payment_errors', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payment_errors_checkout_id'), ['checkout_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payment_errors_error_code'), ['error_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_payment_errors_occurred_at'), ['occurred_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_payment_errors_session_id'), ['session_id'], unique=False)

    op.create_table('user_sessions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('session_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=255), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('phone', sa.String(length=64), nullable=True),
    sa.Column('ip_address', sa.String(length=45), nullable=True),
    sa.Column('user_agent', sa.String(length=1024), nullable=True),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_activity', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('current_page_type', sa.String(length=32), nullable=True),
    sa.Column('current_page_identifier', sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('session_id')
    )
    with op.batch_alter_table('user_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_user_sessions_email'), ['email'], unique=False)
        batch_op.create_index('ix_user_sessions_live', ['last_activity', 'current_page_type', 'current_page_identifier'], unique=False, sqlite_where=sa.text('is_active = 1'), postgresql_where=sa.text('is_active = true'))
        batch_op.create_index(batch_op.f('ix_user_sessions_phone'), ['phone'], unique=False)
        batch_op.create_index(batch_op.f('ix_user_sessions_user_id'), ['user_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('user_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_sessions_user_id'))
        batch_op.drop_index(batch_op.f('ix_user_sessions_phone'))
        batch_op.drop_index('ix_user_sessions_live', sqlite_where=sa.text('is_active = 1'), postgresql_where=sa.text('is_active = true'))
        batch_op.drop_index(batch_op.f('ix_user_sessions_email'))

    op.drop_table('user_sessions')
    with op.batch_alter_table('payment_errors', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payment_errors_session_id'))
        batch_op.drop_index(batch_op.f('ix_payment_errors_occurred_at'))
        batch_op.drop_index(batch_op.f('ix_payment_errors_error_code'))
        batch_op.drop_index(batch_op.f('ix_payment_errors_checkout_id'))

    op.drop_table('payment_errors')
    with op.batch_alter_table('page_visits', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_page_visits_session_id'))
        batch_op.drop_index('ix_page_visits_open', sqlite_where=sa.text('is_active = 1'), postgresql_where=sa.text('is_active = true'))
        batch_op.drop_index(batch_op.f('ix_page_visits_entered_at'))

    op.drop_table('page_visits')
    op.drop_table('live_metrics')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_events_session_id'))
        batch_op.drop_index(batch_op.f('ix_events_occurred_at'))

    op.drop_table('events')
    with op.batch_alter_table('checkout_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_checkout_sessions_status'))
        batch_op.drop_index(batch_op.f('ix_checkout_sessions_started_at'))
        batch_op.drop_index(batch_op.f('ix_checkout_sessions_session_id'))
        batch_op.drop_index(batch_op.f('ix_checkout_sessions_phone'))
        batch_op.drop_index(batch_op.f('ix_checkout_sessions_payment_error_at'))
        batch_op.drop_index(batch_op.f('ix_checkout_sessions_email'))
        batch_op.drop_index(batch_op.f('ix_checkout_sessions_completed_at'))

    op.drop_table('checkout_sessions')
    op.drop_table('audit_log')
