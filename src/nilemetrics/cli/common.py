"""What every command shares: settings from flags and environment, one-line errors."""

from __future__ import annotations

from typing import Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console

from nilemetrics.config import Settings

err_console = Console(stderr=True, soft_wrap=True)  # one message, one line, even in logs


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one clear error line and exit non-zero (never a traceback)."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def build_settings(**overrides: Any) -> Settings:
    """Settings from ``NILEMETRICS_*`` variables, with given (non-None) flags on top."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: "
            f"{e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        fail(f"invalid setting: {problems}")
