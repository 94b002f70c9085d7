"""What the server logs: tokens masked whatever their encoding."""

from __future__ import annotations

import logging

import pytest

from nilemetrics.server.redaction import RedactTokensFilter, redact

SECRET = "s3cret-token"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"/ws?token={SECRET}&x=1", "/ws?token=***&x=1"),
        (f"/ws?tok%65n={SECRET}", "/ws?tok%65n=***"),
        (f"/ws?x=1&%74%6F%6B%65%6E={SECRET}", "/ws?x=1&%74%6F%6B%65%6E=***"),
        (f"/ws?TOKEN={SECRET}", "/ws?TOKEN=***"),
        (f"/ws?tok%2565n={SECRET}", "/ws?tok%2565n=***"),
        (f"/ws?token%3D{SECRET}", "/ws?token%3D***"),
        (f"/ws?access_token={SECRET}#top", "/ws?access_token=***#top"),
        ("/ws?page=2&q=a%3Db", "/ws?page=2&q=a%3Db"),
    ],
)
def test_token_parameter_masked_whatever_its_encoding(text: str, expected: str) -> None:
    """A token parameter is masked however its name (or its '=') is percent-encoded."""
    assert redact(text) == expected


def test_access_record_keeps_its_five_arguments() -> None:
    """The filter redacts uvicorn's access arguments in place and keeps all five."""
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", f"/api/metrics/ws?tok%65n={SECRET}", "1.1", 200), None,
    )
    assert RedactTokensFilter().filter(record)
    assert record.args == ("127.0.0.1:5", "GET", "/api/metrics/ws?tok%65n=***", "1.1", 200)
    assert SECRET not in record.getMessage()


def test_error_record_token_built_from_format_is_masked() -> None:
    """A token put together by the format string and an argument is masked too."""
    record = logging.LogRecord("uvicorn.error", logging.WARNING, __file__, 1,
                               "rejected %s?token=%s", ("/ws", SECRET), None)
    RedactTokensFilter().filter(record)
    assert record.getMessage() == "rejected /ws?token=***"
