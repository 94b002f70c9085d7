"""Text columns as wide as the API's limits; checkouts that know only their item count.

Page types are any slug up to 64 characters (the shop's client sends types
nobody listed, such as ``product_listing``): ``page_visits.page_type`` and
``user_sessions.current_page_type`` grow from 32 to 64 characters. The API
accepts a ``paymentMethod`` of up to 255 characters (like every identifier)
but the checkout and payment-error columns were ``VARCHAR(64)``: on PostgreSQL
such an event was refused and lost, on SQLite it was stored. Widening is
PostgreSQL only: there it changes the catalogue, not the rows or their
indexes. SQLite ignores declared lengths, and altering a column would rebuild
the whole table for nothing.

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

_WIDENED = (
    ('checkout_sessions', 'payment_method', 64, 255),
    ('payment_errors', 'payment_method', 64, 255),
    ('page_visits', 'page_type', 32, 64),
    ('user_sessions', 'current_page_type', 32, 64),
)


def upgrade() -> None:
    op.add_column('checkout_sessions', sa.Column('item_count', sa.Integer(), nullable=True))
    if op.get_bind().dialect.name != 'postgresql':
        return
    for table, column, old, new in _WIDENED:
        op.alter_column(table, column, type_=sa.String(new), existing_type=sa.String(old))


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        # Fails (as it should) if a longer value has been stored since.
        for table, column, old, new in _WIDENED:
            op.alter_column(table, column, type_=sa.String(old), existing_type=sa.String(new))
    op.drop_column('checkout_sessions', 'item_count')
