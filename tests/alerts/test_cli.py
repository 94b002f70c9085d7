"""`nilemetrics alerts check|test|list` and `serve --alerts`, as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner, Result

from nilemetrics.cli.main import app
from nilemetrics.config import Settings
from nilemetrics.server.db import make_engine, migrate
from tests.alerts.conftest import Receiver, rules_file, with_alerts
from tests.alerts.test_notifications import ERRORS_RULE, fail_payments
from tests.cli.conftest import run_cli
from tests.support import FakeClock, free_port, run_server


def nm(*args: str) -> Result:
    """`nilemetrics ARGS` in-process, stdout and stderr apart."""
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_check_summarises_a_good_file(tmp_path: Path, receiver: Receiver) -> None:
    """alerts check: exit 0 and one line per rule and notifier."""
    path = rules_file(tmp_path / "alerts.toml", ERRORS_RULE + 'repeat = "1h"\n',
                      f"ops = {receiver.url}")
    result = nm("alerts", "check", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"{path}: 1 rule(s), 1 notifier(s): ok",
        '  rule "payment errors": payment_errors over the last 5m above 5, repeated every 1h '
        "-> ops",
        f'  notify "ops": json://127.0.0.1:{receiver.port}/hook',
    ]


def test_check_refuses_a_bad_file_in_one_line(tmp_path: Path) -> None:
    """alerts check: exit 1 and the file, rule and field on one line of stderr."""
    path = rules_file(tmp_path / "alerts.toml", ERRORS_RULE.replace("above = 5", "above = []"),
                      "ops = json://127.0.0.1:9/hook")
    result = nm("alerts", "check", str(path))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f'error: {path}: rule "payment errors": above: must be a number\n'


def test_test_sends_to_every_notifier_of_the_rule(tmp_path: Path, receiver: Receiver) -> None:
    """alerts test: a TEST notification reaches the receiver now; a refusal is exit 1."""
    path = rules_file(tmp_path / "alerts.toml", ERRORS_RULE, f"ops = {receiver.url}")
    result = nm("alerts", "test", str(path), "--rule", "payment errors")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f'sent a test notification to "ops" (json://127.0.0.1:{receiver.port}/hook)\n')
    [sent] = receiver.received
    assert sent.title == "[TEST] payment errors"
    assert sent.body["type"] == "info"
    assert sent.message.splitlines() == [
        "This is a test notification from `nilemetrics alerts test`.",
        "The rule fires when payment_errors over the last 5m is above 5.",
        "The current value was not read (alerts test --database-url reads it).",
        'Rule "payment errors" - nilemetrics',
    ]
    receiver.fail_next = 1
    refused = nm("alerts", "test", str(path), "--rule", "payment errors")
    assert refused.exit_code == 1
    assert refused.stderr.startswith(
        f'error: could not send to "ops" (json://127.0.0.1:{receiver.port}/hook): '
        "Failed to send JSON POST notification: Servers are overloaded., error=503.\n")
    assert refused.stderr.count("\n") == 1
    unknown = nm("alerts", "test", str(path), "--rule", "nope")
    assert unknown.exit_code == 1
    assert unknown.stderr == (
        f'error: --rule: no rule named "nope" in {path} (its rules: "payment errors")\n')


def test_test_reads_the_current_value_when_given_a_database(
    tmp_path: Path, receiver: Receiver
) -> None:
    """alerts test --database-url: the test message has the value and top codes of now."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    path = rules_file(tmp_path / "alerts.toml", ERRORS_RULE, f"ops = {receiver.url}")
    result = nm("alerts", "test", str(path), "--rule", "payment errors", "--database-url", url)
    assert result.exit_code == 0, result.output
    [sent] = receiver.received
    assert "payment_errors is 0 over the last 5m.\nTop error codes (last 5m): none" in (
        sent.message)


def test_list_shows_states_since_when(
    settings: Settings, clock: FakeClock, tmp_path: Path, receiver: Receiver
) -> None:
    """alerts list: each rule with firing/ok and since when; --json; a wrong token refused."""
    rules = ERRORS_RULE + ERRORS_RULE.replace('"payment errors"', '"quiet"').replace(
        "above = 5", "above = 500")
    path = rules_file(tmp_path / "alerts.toml", rules, f"ops = {receiver.url}")
    with run_server(with_alerts(settings, path), clock) as live, \
            httpx.Client(base_url=live.base_url, timeout=10) as client:
        fail_payments(client, 6)
        receiver.wait_for(1)
        as_json = nm("alerts", "list", "--url", live.base_url, "--token", live.token, "--json")
        table = nm("alerts", "list", "--url", live.base_url, "--token", live.token)
        wrong = nm("alerts", "list", "--url", live.base_url, "--token", "nope")
    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.stdout)
    assert (body["configured"], body["file"], body["pending"]) == (True, str(path), [])
    assert [(r["rule"], r["state"], r["since"], r["value"], r["episode"])
            for r in body["rules"]] == [
        ("payment errors", "firing", "2026-11-24T12:00:00Z", 6.0, 1),
        ("quiet", "ok", "2026-11-24T12:00:00Z", 6.0, 0),
    ]
    assert table.exit_code == 0, table.output
    cells = [[cell.strip() for cell in line.split("│")[1:-1]]
             for line in table.stdout.splitlines() if line.startswith("│")]
    starts = [row for row in cells if row[0]]  # a rule's first line (cells wrap at 80 columns)
    assert [row[:4] for row in starts] == [
        ["payment errors", "firing", "2026-11-24 12:00:00Z", "6"],
        ["quiet", "ok", "2026-11-24 12:00:00Z", "6"],
    ]
    assert wrong.exit_code == 1
    assert wrong.stderr.startswith(f"error: the server at {live.base_url} refused the token (401)")


def test_serve_refuses_a_bad_rules_file_at_start(tmp_path: Path) -> None:
    """serve --alerts (or NILEMETRICS_ALERTS) with a bad file: one error line, nothing started."""
    path = rules_file(tmp_path / "alerts.toml", ERRORS_RULE.replace('"5m"', '"five minutes"'),
                      "ops = json://127.0.0.1:9/hook")
    expected = (f"error: {path}: rule \"payment errors\": window: invalid duration "
                "'five minutes': use a number of seconds or forms like 90s, 30m, 1h30m, 7d")
    env = {"NILEMETRICS_DATABASE_URL": f"sqlite:///{tmp_path / 's.db'}"}
    by_flag = run_cli(["serve", "--port", str(free_port()), "--alerts", str(path)], env=env)
    by_env = run_cli(["serve", "--port", str(free_port())],
                     env={**env, "NILEMETRICS_ALERTS": str(path)})
    for result in (by_flag, by_env):
        assert result.returncode == 1
        assert result.stderr.strip() == expected
        assert "Traceback" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "s.db").exists()  # refused before the database was touched


def _serve(port: int, path: Path, database_url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "NILEMETRICS_DATABASE_URL": database_url,
           "NILEMETRICS_DASHBOARD_TOKEN": "crash-token", "NILEMETRICS_ALERTS_INTERVAL": "0.2"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nilemetrics", "serve", "--port", str(port), "--alerts",
         str(path), "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc
        except httpx.HTTPError:
            assert proc.poll() is None, "serve exited"
            assert time.monotonic() < deadline, "serve did not start"
            time.sleep(0.2)


def test_a_killed_server_neither_loses_nor_doubles_a_notification(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    """SIGKILL while a notification is undelivered: the next server sends it, exactly once."""
    rule = ERRORS_RULE.replace('"5m"', '"1h"').replace("above = 5", "above = 0")
    path = rules_file(tmp_path / "alerts.toml", rule, f"ops = {receiver.url}")
    receiver.fail_next = 10_000  # down
    port = free_port()
    first = _serve(port, path, database_url)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            fail_payments(client, 1)
        receiver.wait_attempts(1, timeout=20)
    finally:
        first.kill()  # no shutdown at all: as a crash or an OOM kill
        first.wait(10)
    receiver.fail_next = 0
    second = _serve(port, path, database_url)
    try:
        [firing] = receiver.wait_for(1, timeout=20)
        time.sleep(2)  # ten more ticks: still the same episode, nothing new to send
        assert receiver.titles() == ["[FIRING] payment errors"]
        answer = httpx.get(f"http://127.0.0.1:{port}/api/metrics/alerts",
                           headers={"Authorization": "Bearer crash-token"}, timeout=10).json()
    finally:
        second.terminate()
        second.wait(20)
    assert "payment_errors is 1 over the last 1h: above 0." in firing.message
    assert [(r["state"], r["episode"]) for r in answer["rules"]] == [("firing", 1)]
    assert answer["pending"] == []
