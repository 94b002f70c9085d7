"""CLI test helpers: invoke the Typer app in-process or as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence

import pytest
from typer.testing import CliRunner, Result

from nilemetrics.cli.main import app

Invoke = Callable[..., Result]


@pytest.fixture
def nm() -> Invoke:
    """Run `nilemetrics ARGS` in-process (stdout and stderr kept apart)."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(app, list(args), input=input, catch_exceptions=False)

    return invoke


def run_cli(args: Sequence[str], *, timeout: float = 60,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m nilemetrics ARGS` as a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "nilemetrics", *args],
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
