"""Human durations such as ``90s``, ``30m``, ``1h30m`` or ``90d`` as seconds."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(text: str | float | int) -> float:
    """Return the number of seconds in ``text``; a bare number means seconds.

    Raises ``ValueError`` with a message fit for an end user on anything else.
    """
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        raw = str(text).strip().lower().replace(" ", "")
        try:
            seconds = float(raw)
        except ValueError:
            pos, seconds = 0, 0.0
            for match in _PART.finditer(raw):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNITS[match.group(2)]
                pos = match.end()
            if pos != len(raw) or not raw:
                raise ValueError(
                    f"invalid duration {str(text)!r}: use a number of seconds or "
                    "forms like 90s, 30m, 1h30m, 7d"
                ) from None
    if not math.isfinite(seconds):
        # float() reads "nan", "inf" and 1e400; none is a duration anyone means.
        raise ValueError(f"invalid duration {str(text)!r}: must be a finite number of seconds")
    if seconds < 0:
        raise ValueError(f"invalid duration {str(text)!r}: must not be negative")
    return seconds


def format_duration(seconds: float) -> str:
    """Render seconds compactly (``1h30m``), the inverse of :func:`parse_duration`."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    rest = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)
