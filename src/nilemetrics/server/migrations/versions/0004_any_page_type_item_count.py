"""Any page type, and checkouts that know only their item count.

Page types are any slug up to 64 characters (the shop's client sends types
nobody listed, such as ``product_listing``): ``page_visits.page_type`` and
``user_sessions.current_page_type`` grow from 32 to 64 characters. On
PostgreSQL, widening a ``varchar`` rewrites neither the table nor its indexes;
SQLite does not enforce the length, so it is left as it is.

``checkout_sessions.item_count``: a payment event for a session whose checkout
start was lost creates the checkout from what it carries, which may be an item
count without the items.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('checkout_sessions', sa.Column('item_count', sa.Integer(), nullable=True))
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.alter_column('page_visits', 'page_type', type_=sa.String(64),
                    existing_type=sa.String(32), existing_nullable=False)
    op.alter_column('user_sessions', 'current_page_type', type_=sa.String(64),
                    existing_type=sa.String(32), existing_nullable=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.alter_column('user_sessions', 'current_page_type', type_=sa.String(32),
                        existing_type=sa.String(64), existing_nullable=True)
        op.alter_column('page_visits', 'page_type', type_=sa.String(32),
                        existing_type=sa.String(64), existing_nullable=False)
    op.drop_column('checkout_sessions', 'item_count')
