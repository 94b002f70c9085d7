"""CSV export of the payment-error rows the table shows."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from nilemetrics.spreadsheet import formula_safe
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
    # Emails, phones and IPs: readable by the owner only (0600), never by other users.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "w", newline="", encoding="utf-8", errors="backslashreplace") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for row in rows:
            raw = row.raw
            writer.writerow(
                [
                    row.at.isoformat() if row.at else "",
                    formula_safe(row.email),
                    formula_safe(row.phone),
                    row.amount_text,
                    formula_safe(row.payment_method),
                    len(row.items),
                    formula_safe(row.items_text),
                    formula_safe(row.error_code),
                    formula_safe(row.error_message),
                    row.ip_address,
                    row.browser,
                    formula_safe(row.user_agent),
                    formula_safe(str(raw.get("session_id") or "")),
                    raw.get("attempt") if raw.get("attempt") is not None else "",
                    formula_safe(str(raw.get("checkout_status") or "")),
                    formula_safe(json.dumps(raw.get("error_details"), ensure_ascii=False))
                    if raw.get("error_details") is not None
                    else "",
                ]
            )
            count += 1
    return path, count
