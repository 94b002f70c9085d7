"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, Numeric, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine

from nilemetrics.protocol.text import clean_json

#: How deep a stored value is cleaned (older servers refused nothing for depth).
_STORED_LIMIT = 200


def clean_stored(value: Any) -> Any:
    """Text read back from the database, made encodable (rows stored before the policy).

    Reads must never fail on what an older server stored: SQLite's JSON columns
    kept lone surrogates as ``\\ud800`` escapes, which no UTF-8 answer can carry.
    """
    return clean_json(value, _STORED_LIMIT)


class JSONType(TypeDecorator[Any]):
    """JSON on SQLite, JSONB on PostgreSQL (indexable, compact).

    What is read back is always encodable as UTF-8: rows an older server stored
    in SQLite may hold lone surrogates, which would make every answer that
    carries them fail (see ``nilemetrics.protocol.text``).
    """

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else clean_stored(value)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes; SQLite stores them as naive UTC text."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Money(TypeDecorator[Decimal]):
    """Exact amounts with two decimals: NUMERIC on PostgreSQL, text on SQLite.

    SQLite has no decimal type (NUMERIC there means a binary float), so the exact
    value is kept as its canonical text.
    """

    impl = Numeric(14, 2)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(32))
        return dialect.type_descriptor(Numeric(14, 2))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = Decimal(value).quantize(Decimal("0.01"))
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(str(value)).quantize(Decimal("0.01"))
