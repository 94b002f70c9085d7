"""What personal data a request may leave behind (DESIGN.md "Privacy and security").

The one place where an event is minimised: :func:`request_context` decides which
client facts (IP, user agent) may be stored, :func:`minimise` strips the body of
a sender who asked not to be tracked. What comes out of here is stored as is.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import BaseModel
from starlette.requests import HTTPConnection

from nilemetrics.config import IpStorage
from nilemetrics.protocol.bodies import PaymentErrorIn, SessionStartIn


@dataclass(frozen=True, slots=True)
class RequestContext:
    """The client facts we may store for one request, already minimised."""

    ip_address: str | None
    user_agent: str | None
    anonymous: bool
    """True when the browser asked not to be tracked: no contact data, IP or user agent."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled with every event sent to the writer process (see TrackedEvent).
        return (RequestContext, (self.ip_address, self.user_agent, self.anonymous))


def minimise(body: BaseModel, ctx: RequestContext) -> BaseModel:
    """``body`` without personal data if its sender asked not to be tracked.

    No contact fields (email, phone, user id) and no user agent inside error
    details; the request's own IP and user agent are already left out of ``ctx``.
    """
    if not ctx.anonymous:
        return body
    if isinstance(body, SessionStartIn):
        return body.model_copy(update={"user_id": None, "email": None, "phone": None})
    if isinstance(body, PaymentErrorIn) and isinstance(body.error_details, dict):
        details = {k: v for k, v in body.error_details.items() if k != "userAgent"}
        return body.model_copy(update={"error_details": details})
    return body


@lru_cache(maxsize=8192)  # the same clients call again and again; parsing is not free
def anonymize_ip(raw: str | None) -> str | None:
    """Keep the network part only: IPv4 /24, IPv6 /48; garbage becomes ``None``."""
    if not raw:
        return None
    try:
        addr = ipaddress.ip_address(raw.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False).network_address)


def asked_anonymous(conn: HTTPConnection) -> bool:
    """``?privacy=1``: the tracker saw GPC, DNT or an opt-out in the browser.

    Scripts cannot set ``Sec-GPC`` or ``DNT`` themselves, and ``sendBeacon`` sets no
    headers at all, so the tracker says it in the query string.
    """
    query: bytes = conn.scope.get("query_string", b"")
    return bool(query) and conn.query_params.get("privacy") == "1"


def request_context(
    conn: HTTPConnection, ip_storage: IpStorage, honour_signals: bool
) -> RequestContext:
    """Build the storable facts of a request under the configured privacy rules."""
    # Straight from the ASGI scope: this runs for every event, and building a
    # Headers object and looking it up three times cost more than the rest.
    scope = conn.scope
    gpc, dnt, agent = _privacy_headers(scope["headers"])
    if (honour_signals and (_is_one(gpc) or _is_one(dnt))) or asked_anonymous(conn):
        return RequestContext(ip_address=None, user_agent=None, anonymous=True)
    client = scope.get("client")
    host = client[0] if client else None
    if ip_storage == "none":
        ip = None
    elif ip_storage == "anonymized":
        ip = anonymize_ip(host)
    else:
        ip = _valid_ip(host)
    return RequestContext(
        ip_address=ip, user_agent=agent[:1024] if agent else None, anonymous=False
    )


def _privacy_headers(
    headers: Iterable[tuple[bytes, bytes]],
) -> tuple[str | None, str | None, str | None]:
    """The first Sec-GPC, DNT and User-Agent values (as Starlette's ``Headers.get``)."""
    gpc = dnt = agent = None
    for key, value in headers:
        if key == b"user-agent":
            if agent is None:
                agent = value.decode("latin-1")
        elif key == b"sec-gpc":
            if gpc is None:
                gpc = value.decode("latin-1")
        elif key == b"dnt" and dnt is None:
            dnt = value.decode("latin-1")
    return gpc, dnt, agent


def _is_one(value: str | None) -> bool:
    return value is not None and value.strip() == "1"


@lru_cache(maxsize=8192)
def _valid_ip(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        return str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        return None
