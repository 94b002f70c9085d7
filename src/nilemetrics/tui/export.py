"""CSV export of the payment-error rows the table shows."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from nilemetrics.tui.model import ErrorRow

COLUMNS = (
    "time",
    "email",
    "phone",
    "amount",
    "payment_method",
    "item_count",
    "items",
    "error_code",
    "error_message",
    "ip_address",
    "browser",
    "user_agent",
    "session_id",
    "attempt",
    "checkout_status",
    "error_details",
)

# Spreadsheets run cells starting with these as formulas; customer data must not.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _safe(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def export_rows(rows: Iterable[ErrorRow], directory: Path, now: datetime) -> tuple[Path, int]:
    """Write the rows to a new CSV file in ``directory``; return its path and the row count."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"nilemetrics-payment-errors-{now:%Y%m%d-%H%M%S}"
    path = directory / f"{stem}.csv"
    suffix = 1
    while path.exists():
        suffix += 1
        path = directory / f"{stem}-{suffix}.csv"
    count = 0
    with path.open("x", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for row in rows:
            raw = row.raw
            writer.writerow(
                [
                    row.at.isoformat() if row.at else "",
                    _safe(row.email),
                    _safe(row.phone),
                    row.amount_text,
                    _safe(row.payment_method),
                    len(row.items),
                    _safe(row.items_text),
                    _safe(row.error_code),
                    _safe(row.error_message),
                    row.ip_address,
                    row.browser,
                    _safe(row.user_agent),
                    _safe(str(raw.get("session_id") or "")),
                    raw.get("attempt") if raw.get("attempt") is not None else "",
                    _safe(str(raw.get("checkout_status") or "")),
                    _safe(json.dumps(raw.get("error_details"), ensure_ascii=False))
                    if raw.get("error_details") is not None
                    else "",
                ]
            )
            count += 1
    return path, count
