"""Keep dashboard tokens out of logs (uvicorn logs request paths, query strings included)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from urllib.parse import unquote_plus

# A ``name=value`` pair as it appears in a query string or a message. The name may
# be percent-encoded (``tok%65n``), and so may the ``=`` (``%3D``): the server
# decodes names before matching them, so the redaction must decode them too.
_PARAM = re.compile(
    r"(?P<name>[^\s?&=/\"'#<>;,]+)(?P<eq>=|%3[dD])(?P<value>[^&\s\"'#<>;,]*)"
)
_BEARER = re.compile(r"(bearer\s+)[^\s\"']+", re.IGNORECASE)


def _decoded(name: str) -> str:
    # Decoded until stable (a few rounds): %2565 is still "e" to a careless proxy.
    for _ in range(3):
        decoded = unquote_plus(name)
        if decoded == name:
            break
        name = decoded
    return name.casefold()


#: Query parameters that name a person: the erasure endpoint's deprecated query form.
_PERSONAL = frozenset({"email", "phone", "user_id", "userid", "session_id", "sessionid"})


def _mask_param(match: re.Match[str]) -> str:
    name = _decoded(match["name"])
    if not match["value"] or ("token" not in name and name not in _PERSONAL):
        return match[0]
    return f"{match['name']}{match['eq']}***"


def redact(text: str) -> str:
    """``text`` with token parameters (whatever their encoding) and bearer credentials masked."""
    if "=" in text or "%" in text:
        text = _PARAM.sub(_mask_param, text)
    return _BEARER.sub(r"\1***", text)


def _clean(value: object) -> object:
    return redact(value) if isinstance(value, str) else value


class RedactTokensFilter(logging.Filter):
    """A logging filter that masks tokens, keeping the record's shape.

    uvicorn's access formatter unpacks the record's five arguments itself, so
    the arguments are redacted one by one; the record never loses them.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's arguments (or message) in place; never drops a record."""
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(_clean(arg) for arg in args)
        elif isinstance(args, Mapping):
            record.args = {key: _clean(value) for key, value in args.items()}
        if not args and isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if args and isinstance(record.msg, str) and ("=" in record.msg or "%3" in record.msg):
            message = record.getMessage()
            cleaned = redact(message)
            if cleaned != message:
                # A token assembled from the format and an argument ("token=%s"):
                # keep a one-argument shape that formats to the redacted text.
                record.msg, record.args = "%s", (cleaned,)
                record.__dict__.pop("color_message", None)
        return True


def install_redaction(logger_names: tuple[str, ...] = ("uvicorn.access", "uvicorn.error")) -> None:
    """Attach the filter to uvicorn's loggers (once)."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokensFilter) for f in logger.filters):
            logger.addFilter(RedactTokensFilter())
