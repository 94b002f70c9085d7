"""The text policy of the contract: what a string from a client becomes before it is stored.

One policy for all text coming in, so that SQLite and PostgreSQL store the same thing.

JSON may carry characters that cannot be stored as UTF-8 text: a lone surrogate
(``"\\ud800"``, which a browser's ``JSON.stringify`` sends for a broken string)
and NUL (``"\\u0000"``, which PostgreSQL's text and jsonb refuse). Both become
U+FFFD (the replacement character) at validation, in every string of a body,
object keys and nested JSON included. The event is stored, its text marked as
damaged, on both databases alike. JSON nested deeper than :data:`MAX_DEPTH` is
refused: nothing a shop sends is that deep, and deeper values cost recursion
in every later step (the hand-off to the writer process, the database driver).
"""

from __future__ import annotations

import re
from typing import Any

#: Deepest JSON accepted inside a field (``[{"a": 1}]`` is 2 levels).
MAX_DEPTH = 32
REPLACEMENT = "\ufffd"

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def clean_text(value: str) -> str:
    """``value`` with NULs and lone surrogates replaced by U+FFFD."""
    if value.isascii():
        # The common case: only a NUL can be wrong.
        return value.replace("\x00", REPLACEMENT) if "\x00" in value else value
    return _UNSTORABLE.sub(REPLACEMENT, value)


def clean_json(value: Any, limit: int = MAX_DEPTH + 1) -> Any:
    """Every string of a JSON value (keys too) cleaned; deeper than ``limit`` left as is.

    The limit keeps this walk from recursing without end; whatever lies deeper is
    refused by :func:`check_depth` or dropped (an unknown field) anyway.
    """
    if isinstance(value, str):
        return clean_text(value)
    if limit <= 0:
        return value
    if isinstance(value, dict):
        return {
            (clean_text(k) if isinstance(k, str) else k): clean_json(v, limit - 1)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [clean_json(item, limit - 1) for item in value]
    return value


def depth(value: Any, limit: int = MAX_DEPTH + 1) -> int:
    """Nesting depth of a JSON value (a scalar is 0, ``[1]`` is 1), counted up to ``limit``."""
    if limit <= 0 or not isinstance(value, dict | list):
        return 0
    children = value.values() if isinstance(value, dict) else value
    return 1 + max((depth(child, limit - 1) for child in children), default=0)


def check_depth(value: Any, levels: int = MAX_DEPTH) -> Any:
    """``value`` itself, or ValueError when it is nested deeper than ``levels``."""
    if depth(value, levels + 1) > levels:
        raise ValueError(f"JSON nested deeper than {levels} levels")
    return value
