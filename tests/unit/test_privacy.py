"""What personal data a request may leave behind: IP storage, privacy signals, minimising."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import HTTPConnection

from nilemetrics.protocol.bodies import PageVisitIn, PaymentErrorIn, SessionStartIn
from nilemetrics.server.ingestion.privacy import (
    RequestContext,
    anonymize_ip,
    minimise,
    request_context,
)

SID = "3f2b8c1e-7d4a-4c3b-9e1f-2a5b6c7d8e9f"
ANONYMOUS = RequestContext(ip_address=None, user_agent=None, anonymous=True)
TRACKED = RequestContext(ip_address="203.0.113.0", user_agent="Firefox/128", anonymous=False)


def connection(
    headers: dict[str, str] | None = None, client: str | None = "203.0.113.77", query: str = ""
) -> HTTPConnection:
    """A request as the ASGI server describes it (lower-case header names, bytes)."""
    scope: dict[str, Any] = {
        "type": "http",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": (client, 51000) if client is not None else None,
        "query_string": query.encode(),
    }
    return HTTPConnection(scope)


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("203.0.113.77", "203.0.113.0"),
        (" 10.1.2.3 ", "10.1.2.0"),
        ("2001:db8:abcd:12:34::1", "2001:db8:abcd::"),
        ("::ffff:192.0.2.9", "192.0.2.0"),
        ("not-an-ip", None),
        ("", None),
        (None, None),
    ],
)
def test_anonymize_ip_keeps_the_network_part_only(raw: str | None, kept: str | None) -> None:
    """IPv4 keeps its /24, IPv6 its /48, a mapped IPv4 is an IPv4; garbage is dropped."""
    assert anonymize_ip(raw) == kept


def test_anonymized_storage_keeps_the_network_and_the_user_agent() -> None:
    """The default setting stores the /24 of the client and its user agent."""
    ctx = request_context(connection({"User-Agent": "Firefox/128"}), "anonymized", True)
    assert ctx == RequestContext("203.0.113.0", "Firefox/128", False)


def test_full_storage_keeps_the_whole_address() -> None:
    """ip_storage=full stores the client address as it is."""
    ctx = request_context(connection({"User-Agent": "Firefox/128"}), "full", True)
    assert ctx == RequestContext("203.0.113.77", "Firefox/128", False)


def test_no_ip_storage_keeps_no_address() -> None:
    """ip_storage=none stores no address but the user agent."""
    ctx = request_context(connection({"User-Agent": "Firefox/128"}), "none", True)
    assert ctx == RequestContext(None, "Firefox/128", False)


def test_a_malformed_client_address_is_not_stored() -> None:
    """A client that is not an IP (a Unix socket name) or no client at all stores none."""
    assert request_context(connection(client="unix:/tmp/s"), "full", True).ip_address is None
    assert request_context(connection(client=None), "full", True).ip_address is None


def test_a_long_user_agent_is_cut_to_the_column_size() -> None:
    """A user agent is stored with at most 1024 characters."""
    ctx = request_context(connection({"User-Agent": "x" * 5000}), "full", True)
    assert ctx.user_agent == "x" * 1024


@pytest.mark.parametrize("header", ["Sec-GPC", "DNT"])
def test_a_privacy_signal_makes_the_request_anonymous(header: str) -> None:
    """Sec-GPC: 1 or DNT: 1 (when honoured) leaves no IP and no user agent."""
    ctx = request_context(connection({header: " 1 ", "User-Agent": "Firefox/128"}), "full", True)
    assert ctx == ANONYMOUS


@pytest.mark.parametrize("header", ["Sec-GPC", "DNT"])
def test_a_signal_is_ignored_when_signals_are_not_honoured(header: str) -> None:
    """honour_signals=False stores the request's facts despite Sec-GPC or DNT."""
    ctx = request_context(connection({header: "1", "User-Agent": "UA"}), "full", False)
    assert ctx == RequestContext("203.0.113.77", "UA", False)


def test_a_signal_of_zero_is_no_opt_out() -> None:
    """DNT: 0 and Sec-GPC: 0 say the user does not object."""
    ctx = request_context(connection({"DNT": "0", "Sec-GPC": "0"}), "full", True)
    assert ctx == RequestContext("203.0.113.77", None, False)


def test_the_trackers_privacy_query_makes_the_request_anonymous_always() -> None:
    """?privacy=1 (the tracker saw an opt-out; beacons carry no headers) is always honoured."""
    conn = connection({"User-Agent": "UA"}, query="privacy=1")
    assert request_context(conn, "full", False) == ANONYMOUS
    other = connection({"User-Agent": "UA"}, query="privacy=0")
    assert request_context(other, "full", False) == RequestContext("203.0.113.77", "UA", False)


def test_minimise_strips_contact_fields_of_an_anonymous_identify() -> None:
    """An anonymous session-start keeps its session id but no user id, email or phone."""
    start = SessionStartIn.model_validate(
        {"sessionId": SID, "userId": "u-1", "email": "a@example.com", "phone": "+9715"}
    )
    assert minimise(start, ANONYMOUS).model_dump() == {
        "session_id": SID, "user_id": None, "email": None, "phone": None, "event_id": None,
        "platform": None, "app_version": None,
    }
    assert start.email == "a@example.com"  # the caller's body is not changed


def test_minimise_strips_the_user_agent_from_an_anonymous_error() -> None:
    """An anonymous payment error loses the userAgent the shop's client puts in it."""
    error = PaymentErrorIn.model_validate({
        "sessionId": SID,
        "errorDetails": {"errorCode": "declined", "userAgent": "Mozilla/5.0",
                         "errorDetails": {"totalAmount": 84.2}},
    })
    minimised = minimise(error, ANONYMOUS)
    assert isinstance(minimised, PaymentErrorIn)
    assert minimised.error_details == {"errorCode": "declined",
                                       "errorDetails": {"totalAmount": 84.2}}
    assert minimised.normalised().user_agent is None


def test_minimise_keeps_a_tracked_senders_body_as_sent() -> None:
    """Without a privacy signal the body is returned untouched (the same object)."""
    start = SessionStartIn.model_validate({"sessionId": SID, "email": "a@example.com"})
    assert minimise(start, TRACKED) is start


def test_minimise_keeps_bodies_without_personal_data() -> None:
    """A page visit carries no contact data: it is stored as sent, even anonymously."""
    visit = PageVisitIn.model_validate({"sessionId": SID, "pageType": "homepage"})
    assert minimise(visit, ANONYMOUS) is visit
