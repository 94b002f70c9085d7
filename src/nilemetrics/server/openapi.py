"""The error answers routes declare in the OpenAPI document (what the server really sends)."""

from __future__ import annotations

from typing import Any

from nilemetrics.protocol.answers import ProblemOut, ValidationProblemOut
from nilemetrics.protocol.bodies import MAX_BODY_BYTES

_PROBLEMS: dict[int, dict[str, Any]] = {
    400: {"model": ProblemOut, "description": "The body is not JSON."},
    401: {"model": ProblemOut, "description": "Missing or invalid bearer token."},
    404: {"model": ProblemOut, "description": "No such thing."},
    413: {
        "model": ProblemOut,
        "description": f"The body is over the size limit ({MAX_BODY_BYTES // 1024} KiB by "
        "default).",
    },
    422: {"model": ValidationProblemOut, "description": "A field is missing or wrong."},
    429: {
        "model": ProblemOut,
        "description": "This client has too many events waiting to be written; nothing was "
        "stored (see Retry-After).",
    },
    503: {
        "model": ProblemOut,
        "description": "The database is unavailable; nothing was stored (see Retry-After).",
    },
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route that may answer these error statuses."""
    return {code: _PROBLEMS[code] for code in codes}
