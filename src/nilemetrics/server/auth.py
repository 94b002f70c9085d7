"""Bearer-token check for the dashboard and operations endpoints."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, status
from starlette.requests import HTTPConnection


def token_matches(candidate: str | None, tokens: list[str]) -> bool:
    """Constant-time comparison against every accepted token."""
    if not candidate:
        return False
    given = candidate.encode()
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(given, token.encode())
    return matched


def bearer_token(conn: HTTPConnection) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, if any."""
    scheme, _, credentials = conn.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None


def require_token(conn: HTTPConnection, tokens: list[str]) -> None:
    """Raise 401 unless the request carries an accepted bearer token."""
    given = bearer_token(conn)
    if not token_matches(given, tokens):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing bearer token" if given is None else "invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
