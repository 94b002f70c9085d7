"""`nilemetrics watch`: where the URL and the token come from."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from nilemetrics.cli.main import app


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None, float]]:
    """Record run_dashboard calls instead of opening the dashboard."""
    seen: list[tuple[str, str | None, float]] = []
    monkeypatch.setattr("nilemetrics.tui.app.run_dashboard",
                        lambda url, token, alert: seen.append((url, token, alert)))
    return seen


def test_flags_win(calls: list[tuple[str, str | None, float]]) -> None:
    """--url, --token and --alert-errors-per-min reach the dashboard."""
    result = CliRunner().invoke(app, ["watch", "--url", "http://m:9000", "--token", "tok",
                                      "--alert-errors-per-min", "2.5"])
    assert result.exit_code == 0, result.output
    assert calls == [("http://m:9000", "tok", 2.5)]


def test_environment_then_stored_token(calls: list[tuple[str, str | None, float]],
                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NILEMETRICS_URL is used; without a token the one stored by a local server is."""
    (tmp_path / "config").mkdir(parents=True, exist_ok=True)
    (tmp_path / "config" / "dashboard-token").write_text("stored-token\n", encoding="utf-8")
    monkeypatch.setenv("NILEMETRICS_URL", "http://env:8001")
    result = CliRunner().invoke(app, ["watch"])
    assert result.exit_code == 0, result.output
    assert calls == [("http://env:8001", "stored-token", 5.0)]
    monkeypatch.setenv("NILEMETRICS_DASHBOARD_TOKEN", "env-token,second")
    CliRunner().invoke(app, ["watch"])
    assert calls[-1] == ("http://env:8001", "env-token", 5.0)


def test_bad_url_is_one_clear_line(calls: list[tuple[str, str | None, float]]) -> None:
    """An unusable URL fails before the dashboard opens."""
    result = CliRunner().invoke(app, ["watch", "--url", "ftp://x"])
    assert result.exit_code == 1
    assert "invalid --url: unsupported URL scheme 'ftp'" in result.output
    assert calls == []
