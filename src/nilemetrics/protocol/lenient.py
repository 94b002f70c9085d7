"""Lenient parsing for readers of pushed frames: a field that does not fit takes its default.

A dashboard must keep showing what it can when a server (an older or newer
version, or a broken one) sends one odd value: that value becomes its default,
the rest of the body is kept. A body that is not an object is still refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

#: Rounds of dropping bad fields before giving up on the body (defaults only).
_ROUNDS = 3


def lenient(model: type[M], data: Mapping[str, Any]) -> M:
    """``data`` validated as ``model``; each top-level field that fails takes its default.

    ``model`` must give every field a default. Nested values fail as a whole (a
    ``categories`` object with one bad count becomes ``{}``).
    """
    current = dict(data)
    for _ in range(_ROUNDS):
        try:
            return model.model_validate(current)
        except ValidationError as exc:
            bad = {error["loc"][0] for error in exc.errors() if error["loc"]}
            if not bad:
                break
            current = {key: value for key, value in current.items() if key not in bad}
    return model()
