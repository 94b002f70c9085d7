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
                        lambda url, token, alert, replay_at=None: seen.append(
                            (url, token, alert)))
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


@pytest.fixture
def replays(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Record the replay minute run_dashboard is asked to open."""
    seen: list[object] = []
    monkeypatch.setattr("nilemetrics.tui.app.run_dashboard",
                        lambda url, token, alert, replay_at=None: seen.append(replay_at))
    return seen


def test_at_opens_replay_at_a_local_minute(replays: list[object]) -> None:
    """--at "2026-12-01 03:10" is local time (Europe/Berlin here): 02:10 UTC reaches the app."""
    from datetime import UTC, datetime

    result = CliRunner().invoke(app, ["watch", "--token", "t", "--at", "2026-12-01 03:10"])
    assert result.exit_code == 0, result.output
    assert replays == [datetime(2026, 12, 1, 2, 10, tzinfo=UTC)]
    CliRunner().invoke(app, ["watch", "--token", "t", "--at", "2026-12-01T03:10:00Z"])
    assert replays[-1] == datetime(2026, 12, 1, 3, 10, tzinfo=UTC)
    CliRunner().invoke(app, ["watch", "--token", "t"])
    assert replays[-1] is None


@pytest.mark.parametrize(("value", "message"), [
    ("yesterday-ish", "--at: invalid time 'yesterday-ish': use a local time such as "
                      "\"2026-12-01 03:10\" or a duration ago such as 2h"),
    ("2999-01-01 00:00", "--at: '2999-01-01 00:00' is in the future; a replay shows what "
                         "already happened"),
])
def test_a_bad_at_is_one_line(replays: list[object], value: str, message: str) -> None:
    """An unusable --at fails in one line before the dashboard opens."""
    result = CliRunner().invoke(app, ["watch", "--token", "t", "--at", value])
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {message}" or message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert replays == []
