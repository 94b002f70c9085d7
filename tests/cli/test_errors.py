"""Every operations command: --help with an example; errors are one line, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.cli.conftest import run_cli

COMMANDS = ["cleanup", "forget", "export", "report", "simulate", "demo"]
UNREACHABLE = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_an_example(command: str) -> None:
    """`nilemetrics CMD --help` exits 0 and shows an example invocation."""
    result = run_cli([command, "--help"])
    assert result.returncode == 0, result.stderr
    assert f"Example: nilemetrics {command}" in result.stdout


def _one_line_error(result: object) -> str:
    stderr = result.stderr  # type: ignore[attr-defined]
    assert result.returncode != 0  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    return str(lines[0])


@pytest.mark.parametrize(
    "args",
    [
        ["cleanup"],
        ["forget", "--email", "a@b.c", "--yes"],
        ["export", "--what", "events"],
        ["report"],
    ],
)
def test_unreachable_database_is_one_line(args: list[str]) -> None:
    """A database that does not answer: one line naming it (password hidden), exit 1."""
    line = _one_line_error(run_cli([*args, "--database-url", UNREACHABLE]))
    assert line.startswith(f"error: cannot reach database {UNREACHABLE}:")


def test_password_is_not_printed() -> None:
    """The database password never appears in an error."""
    url = "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/nowhere"
    line = _one_line_error(run_cli(["report", "--database-url", url]))
    assert "s3cret" not in line and "***" in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["report", "--since", "3x"], "error: --since: invalid time '3x'"),
        (["export", "--until", "yesterday"], "error: --until: invalid time 'yesterday'"),
        (["cleanup", "--session-timeout", "-5m"], "error: --session-timeout: invalid duration"),
        (["cleanup", "--bogus"], "error: No such option: --bogus (see: nilemetrics cleanup"),
        (["export", "--format", "xml"], "error: Invalid value for '--format'"),
        (["report", "--database-url", "mysql://x/y"], "error: unsupported database 'mysql'"),
    ],
)
def test_bad_input_is_one_line(args: list[str], expected: str) -> None:
    """Bad durations, times, options and URLs: one line starting with the problem."""
    assert _one_line_error(run_cli(args)).startswith(expected)


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    """Reading commands on a missing SQLite file say so and do not create it."""
    path = tmp_path / "absent.db"
    line = _one_line_error(run_cli(["report", "--database-url", f"sqlite:///{path}"]))
    assert line == (
        f"error: no database at {path}: run `nilemetrics init-db` or pass --database-url"
    )
    assert not path.exists()


def test_database_without_schema(tmp_path: Path) -> None:
    """A database without the schema asks for init-db instead of failing on a query."""
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    line = _one_line_error(run_cli(["export", "--database-url", f"sqlite:///{path}"]))
    assert "has no nilemetrics schema" in line and "run `nilemetrics init-db`" in line


@pytest.mark.parametrize("command", ["init-db", "serve", "report", "cleanup"])
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite://relative.db",
         "invalid SQLite URL 'sqlite://relative.db': a file needs three slashes, "
         "sqlite:///relative.db (relative to the current directory) or "
         "sqlite:////absolute/path.db"),
        ("sqlite:///{tmp}/a-file/x.db",
         "cannot use SQLite file {tmp}/a-file/x.db: {tmp}/a-file is a file, not a directory; "
         "pass a path inside a directory"),
        ("sqlite:////proc/nilemetrics/x.db",
         "cannot create directory /proc/nilemetrics for SQLite file /proc/nilemetrics/x.db: "
         "No such file or directory; pass a path in a writable directory"),
    ],
)
def test_unusable_sqlite_path_is_one_line(
    command: str, url: str, expected: str, tmp_path: Path
) -> None:
    """A relative sqlite:// URL, a file in the path or an uncreatable directory: one line."""
    (tmp_path / "a-file").write_text("not a directory")
    url = url.format(tmp=tmp_path)
    args = [command, "--database-url", url] + (["--port", "1"] if command == "serve" else [])
    line = _one_line_error(run_cli(args))
    assert line.endswith(expected.format(tmp=tmp_path)), line
    assert not (tmp_path / "relative.db").exists()


@pytest.mark.parametrize("command", ["init-db", "serve"])
def test_unopenable_sqlite_file_says_what_to_check(command: str) -> None:
    """A file SQLite cannot create (here in /proc): one line that says what to check."""
    url = "sqlite:////proc/nilemetrics.db"
    args = [command, "--database-url", url] + (["--port", "1"] if command == "serve" else [])
    line = _one_line_error(run_cli(args))
    assert line.endswith(
        "unable to open database file (check that its directory exists and is writable)"
    ), line


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to any directory")
def test_unwritable_directory_is_one_line(tmp_path: Path) -> None:
    """A directory the user may not write to: one line, for init-db and for a subdirectory."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert _one_line_error(run_cli(["init-db", "--database-url", f"sqlite:///{locked}/x.db"]))
    line = _one_line_error(run_cli(["init-db", "--database-url",
                                    f"sqlite:///{locked}/sub/x.db"]))
    assert line.endswith("Permission denied; pass a path in a writable directory"), line


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("inf", "invalid time 'inf'"),
        ("nan", "invalid time 'nan'"),
        ("99999999d", "is further back than any date"),
    ],
)
def test_report_refuses_an_impossible_since_in_one_line(value: str, message: str) -> None:
    """`report --since inf` / a date before year 1 is one error line, not an OverflowError."""
    error = _one_line_error(run_cli(["report", "--since", value]))
    assert error.startswith("error: --since:") and message in error, error
