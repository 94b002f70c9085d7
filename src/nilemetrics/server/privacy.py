"""What personal data a request may leave behind (DESIGN.md "Privacy and security")."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache

from starlette.requests import HTTPConnection

from nilemetrics.config import IpStorage


@dataclass(frozen=True, slots=True)
class RequestContext:
    """The client facts we may store for one request, already minimised."""

    ip_address: str | None
    user_agent: str | None
    anonymous: bool
    """True when the browser asked not to be tracked: no contact data, IP or user agent."""


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


def wants_privacy(conn: HTTPConnection) -> bool:
    """``Sec-GPC: 1`` (Global Privacy Control) or ``DNT: 1`` on the request."""
    return conn.headers.get("sec-gpc", "").strip() == "1" or (
        conn.headers.get("dnt", "").strip() == "1"
    )


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
    if asked_anonymous(conn) or (honour_signals and wants_privacy(conn)):
        return RequestContext(ip_address=None, user_agent=None, anonymous=True)
    host = conn.client.host if conn.client else None
    if ip_storage == "none":
        ip = None
    elif ip_storage == "anonymized":
        ip = anonymize_ip(host)
    else:
        ip = _valid_ip(host)
    agent = conn.headers.get("user-agent")
    return RequestContext(
        ip_address=ip, user_agent=agent[:1024] if agent else None, anonymous=False
    )


@lru_cache(maxsize=8192)
def _valid_ip(raw: str | None) -> str | None:
    if not raw:
        return None
    try:
        return str(ipaddress.ip_address(raw.strip()))
    except ValueError:
        return None
