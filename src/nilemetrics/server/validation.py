"""Turning validation errors into answers that name the problem (and echo no input)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


def _field(loc: Sequence[Any], prefix: str | None) -> str:
    parts: list[str] = []
    for part in loc:
        if part in ("body", "query", "path", "header"):
            continue
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif parts:
            parts.append(f".{part}")
        else:
            parts.append(str(part))
    name = "".join(parts)
    if prefix:
        name = f"{prefix}.{name}" if name and not name.startswith("[") else f"{prefix}{name}"
    return name or "body"


def describe_errors(errors: Sequence[Any], prefix: str | None = None) -> list[dict[str, Any]]:
    """``[{"field", "message"}]`` for pydantic errors, without echoing the input."""
    out = []
    for error in errors:
        message = str(error.get("msg", "invalid value"))
        message = message.removeprefix("Value error, ")
        if error.get("type") == "missing":
            message = "field required"
        out.append({"field": _field(error.get("loc", ()), prefix), "message": message})
    return out


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """422 (or 400 for a body that is not JSON) with a readable ``detail``."""
    if not isinstance(exc, RequestValidationError):
        raise TypeError(f"registered for RequestValidationError, got {type(exc).__name__}")
    errors = list(exc.errors())
    if any(error.get("type") == "json_invalid" for error in errors):
        return JSONResponse(
            status_code=400, content={"detail": "request body is not valid JSON"}
        )
    problems = describe_errors(errors)
    if len(problems) == 1 and problems[0]["field"] == "body" and problems[0]["message"] == (
        "field required"
    ):
        problems[0]["message"] = "a JSON body is required"
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return JSONResponse(
        status_code=422,
        content={"detail": f"{first['field']}: {first['message']}{more}", "errors": problems},
    )
