"""Keep dashboard tokens out of logs (uvicorn logs request paths, query strings included)."""

from __future__ import annotations

import logging
import re

_PATTERNS = (
    (re.compile(r"(token=)[^&\s\"']+", re.IGNORECASE), r"\1***"),
    (re.compile(r"(bearer\s+)[^\s\"']+", re.IGNORECASE), r"\1***"),
    # The erasure endpoint's deprecated query form names the person.
    (re.compile(r"\b((?:email|phone|user_?id|session_?id)=)[^&\s\"']+", re.IGNORECASE), r"\1***"),
)


def redact(text: str) -> str:
    """``text`` with token query parameters and bearer credentials masked."""
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class RedactTokensFilter(logging.Filter):
    """A logging filter that masks tokens in the formatted message."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message in place; never drops a record."""
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = ()
        return True


def install_redaction(logger_names: tuple[str, ...] = ("uvicorn.access", "uvicorn.error")) -> None:
    """Attach the filter to uvicorn's loggers (once)."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokensFilter) for f in logger.filters):
            logger.addFilter(RedactTokensFilter())
