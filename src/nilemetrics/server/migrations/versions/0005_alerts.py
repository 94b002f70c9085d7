"""Alert rules' state and the notification outbox (``serve --alerts``).

``alert_state``: one row per rule (ok, pending or firing, since when, the episode
number), shared by every `serve` process on the database, so a restart or another
process continues an episode instead of starting a new one.

``alert_outbox``: every notification is written in the same transaction as the
state change that causes it, then sent and marked sent; unsent rows are retried
with backoff. ``dedupe_key`` is unique, so the same notification can never be
queued twice. A partial index keeps the delivery loop on the pending rows.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('alert_state',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('rule', sa.String(length=255), nullable=False),
    sa.Column('metric', sa.String(length=300), nullable=False),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=False),
    sa.Column('window_seconds', sa.Float(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('since', sa.DateTime(timezone=True), nullable=False),
    sa.Column('pending_since', sa.DateTime(timezone=True), nullable=True),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('episode', sa.Integer(), nullable=False),
    sa.Column('last_notified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('evaluated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('rule')
    )
    op.create_table('alert_outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('dedupe_key', sa.String(length=64), nullable=False),
    sa.Column('rule', sa.String(length=255), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('episode', sa.Integer(), nullable=False),
    sa.Column('notifier', sa.String(length=255), nullable=False),
    sa.Column('target', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=512), nullable=False),
    sa.Column('body', sa.String(length=8192), nullable=False),
    sa.Column('notify_type', sa.String(length=16), nullable=False),
    sa.Column('contact_error_ids', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.String(length=1024), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('dedupe_key')
    )
    op.create_index('ix_alert_outbox_pending', 'alert_outbox', ['notifier', 'target', 'id'], unique=False, sqlite_where=sa.text("status = 'pending'"), postgresql_where=sa.text("status = 'pending'"))


def downgrade() -> None:
    op.drop_index('ix_alert_outbox_pending', table_name='alert_outbox')
    op.drop_table('alert_outbox')
    op.drop_table('alert_state')
