"""What the server logs: tokens masked whatever their encoding, outages in a few lines."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.requests import Request

from nilemetrics.config import Settings
from nilemetrics.server.app import create_app
from nilemetrics.server.db import DatabaseUnavailable
from nilemetrics.server.outage import OutageLog
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


def test_outage_log_is_start_summaries_and_recovery(caplog: pytest.LogCaptureFixture) -> None:
    """3,000 failures over 25 s log a start line, two summaries and a recovery line."""
    now = [0.0]
    outage = OutageLog(logging.getLogger("test.outage"), interval=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.outage"):
        for i in range(3000):
            now[0] = i * 25 / 3000
            outage.failed("connection refused")
        now[0] = 26.0
        outage.succeeded()
        outage.succeeded()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "database unavailable, answering 503: connection refused"
    assert lines[1] == ("database unavailable: 1200 requests answered 503 in the last 10 s: "
                        "connection refused")
    assert lines[2].startswith("database unavailable: 1200 requests answered 503 in the last")
    assert lines[3] == ("database available again after 26 s; 3000 requests were answered "
                        "503 (last error: connection refused)")
    assert len(lines) == 4


def test_unavailable_handler_does_not_log_every_request(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The app's 503 handler, hit 500 times in a burst, logs one line, not 500."""
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}",
                              data_dir=tmp_path, config_dir=tmp_path))
    scope = {"type": "http", "app": app, "method": "POST", "path": "/api/metrics/events",
             "headers": [], "query_string": b""}
    async def burst() -> list[int]:
        codes = []
        for i in range(500):
            exc: Exception = OperationalError("SELECT 1", {}, Exception("server closed"))
            kind: type[Exception] = DBAPIError
            if i % 2:
                exc, kind = DatabaseUnavailable("database is locked"), DatabaseUnavailable
            response = await app.exception_handlers[kind](Request(scope), exc)
            codes.append(response.status_code)
        return codes

    with caplog.at_level(logging.WARNING, logger="nilemetrics.server.app"):
        codes = asyncio.run(burst())
    assert set(codes) == {503}
    assert [r.getMessage() for r in caplog.records] == [
        "database unavailable, answering 503 (first: POST /api/metrics/events): server closed"
    ]
