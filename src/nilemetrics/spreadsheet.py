"""CSV cells that a spreadsheet would run as formulas: customer data must never be one.

Shared by the CLI's ``export`` and the dashboard's CSV export, so both defuse
the same cells the same way (CSV injection, OWASP).
"""

from __future__ import annotations

#: Spreadsheets run cells starting with these as formulas (or as DDE commands).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def formula_safe(value: str) -> str:
    """``value``, with a leading ``'`` if a spreadsheet would read it as a formula."""
    return "'" + value if value.startswith(FORMULA_START) else value
