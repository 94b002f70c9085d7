"""`nilemetrics report --experiment`: assignments sent to a real server, results by the CLI."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from scipy.stats import binomtest, chi2_contingency

from tests.cli.conftest import Invoke
from tests.support import FakeClock, LiveServer

P = "/api/metrics"


@pytest.fixture
def clock() -> FakeClock:
    """The server's clock at the real time: the CLI's periods are relative to now."""
    return FakeClock(datetime.now(UTC))


def _visitors(variant: str, n: int, paid: int, *, signed_up: int = 0) -> list[dict[str, Any]]:
    """Batch events for ``n`` visitors assigned to ``variant`` (a server sends them), of
    whom ``paid`` pay and ``signed_up`` send a custom event ``signup``."""
    events: list[dict[str, Any]] = []
    for i in range(n):
        sid = str(uuid.uuid4())
        events.append({"type": "event", "sessionId": sid, "name": "experiment",
                       "properties": {"experiment": "checkout-button", "variant": variant,
                                      "visitor": f"{variant}-{i}"}})
        if i < paid:
            events += [{"type": "checkout-start", "sessionId": sid, "checkoutItems": [],
                        "totalAmount": 10},
                       {"type": "payment-success", "sessionId": sid}]
        if i < signed_up:
            events.append({"type": "event", "sessionId": sid, "name": "signup"})
    return events


def _send(server: LiveServer, events: list[dict[str, Any]]) -> None:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        for start in range(0, len(events), 200):  # under the 64 KiB body cap
            response = client.post(f"{P}/events", json={"events": events[start:start + 200]})
            assert response.status_code == 200, response.text


def _report(nm: Invoke, server: LiveServer, *args: str) -> Any:
    result = nm("report", "--experiment", "checkout-button", "--since", "1h", *args,
                "--database-url", server.settings.effective_database_url())
    assert result.exit_code == 0, result.output
    return result


def test_experiment_rates_intervals_and_p_value(server: LiveServer, nm: Invoke) -> None:
    """40/200 paid in control, 60/200 in green: rates, Wilson intervals, z-test p-value."""
    _send(server, _visitors("control", 200, 40) + _visitors("green", 200, 60, signed_up=10))
    body = json.loads(_report(nm, server, "--json").stdout)
    assert (body["experiment"], body["goal"], body["control"]) == (
        "checkout-button", "paid", "control")
    control, green = body["variants"]
    assert (control["variant"], control["visitors"], control["conversions"],
            control["rate"]) == ("control", 200, 40, 0.2)
    assert (green["variant"], green["visitors"], green["conversions"], green["rate"]) == (
        "green", 200, 60, 0.3)
    # Checked against SciPy's own implementations (the report uses statsmodels).
    for row in (control, green):
        ci = binomtest(row["conversions"], row["visitors"]).proportion_ci(
            confidence_level=0.95, method="wilson")
        assert (row["rateLow"], row["rateHigh"]) == pytest.approx((ci.low, ci.high), abs=1e-6)
    table = [[60, 140], [40, 160]]
    _chi2, p_value, _dof, _expected = chi2_contingency(table, correction=False)
    assert green["difference"] == pytest.approx(0.1)
    assert green["pValue"] == pytest.approx(p_value, abs=1e-6)  # z² is this chi-square
    assert 0.02 < green["pValue"] < 0.03
    assert green["differenceLow"] < 0.1 < green["differenceHigh"]
    assert green["differenceLow"] > 0  # significant at 95%: the interval excludes 0
    assert control["pValue"] is None and control["difference"] is None
    assert body["sampleRatio"]["mismatch"] is False
    assert body["sampleRatio"]["pValue"] == pytest.approx(1.0)

    text = _report(nm, server).stdout
    assert "Experiment checkout-button: goal paid, control control" in text
    green_line = next(line for line in text.splitlines() if "│ green" in line)
    cells = [cell.strip() for cell in green_line.split("│")[1:-1]]
    assert cells[:4] == ["green", "200", "60", "30.0%"]
    assert cells[5] == "+10.0" and cells[7] == f"{p_value:.3f}"
    assert "sample ratio mismatch" not in text

    events = json.loads(_report(nm, server, "--goal", "event:signup", "--json").stdout)
    assert [(v["variant"], v["conversions"]) for v in events["variants"]] == [
        ("control", 0), ("green", 10)]


def test_sample_ratio_mismatch_is_warned(server: LiveServer, nm: Invoke) -> None:
    """300 visitors against 200 is not an even split: a warning with the chi-square p."""
    _send(server, _visitors("control", 300, 30) + _visitors("green", 200, 20))
    body = json.loads(_report(nm, server, "--json").stdout)
    assert body["sampleRatio"]["mismatch"] is True
    assert body["sampleRatio"]["pValue"] < 0.001
    text = _report(nm, server).stdout
    assert "warning: sample ratio mismatch (chi-square p = < 0.001)" in text
    assert "control 300, green 200" in text


def test_sticky_visitor_counts_once_and_a_switched_one_in_their_first_variant(
    server: LiveServer, nm: Invoke
) -> None:
    """A visitor's two sessions are one visitor; one seen in two variants stays in the first."""
    first, second, third = (str(uuid.uuid4()) for _ in range(3))

    def assign(sid: str, variant: str, visitor: str) -> dict[str, Any]:
        return {"type": "event", "sessionId": sid, "name": "experiment",
                "properties": {"experiment": "checkout-button", "variant": variant,
                               "visitor": visitor}}

    _send(server, [
        assign(first, "control", "ada"), assign(second, "control", "ada"),
        {"type": "checkout-start", "sessionId": second, "checkoutItems": [], "totalAmount": 5},
        assign(third, "control", "bob"), assign(str(uuid.uuid4()), "green", "bob"),
    ])
    body = json.loads(_report(nm, server, "--goal", "checkout", "--json").stdout)
    assert [(v["variant"], v["visitors"], v["conversions"]) for v in body["variants"]] == [
        ("control", 2, 1), ("green", 0, 0)]
    assert body["visitorsInSeveralVariants"] == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--goal", "refund"], "--goal 'refund': use paid, checkout or event:NAME"),
    (["--control", "blue"], "--control 'blue': experiment 'checkout-button' has variants"),
])
def test_bad_goal_or_control_is_one_error_line(
    server: LiveServer, nm: Invoke, args: list[str], message: str
) -> None:
    """A goal or control the experiment does not have: exit 1 and one line naming it."""
    _send(server, _visitors("control", 2, 1))
    result = nm("report", "--experiment", "checkout-button", "--since", "1h", *args,
                "--database-url", server.settings.effective_database_url())
    assert result.exit_code == 1
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_unknown_experiment_is_one_error_line(server: LiveServer, nm: Invoke) -> None:
    """No assignments in the period: exit 1, saying so."""
    result = nm("report", "--experiment", "nothing-here", "--since", "1h",
                "--database-url", server.settings.effective_database_url())
    assert result.exit_code == 1
    assert "no assignments to experiment 'nothing-here' in the period" in result.stderr
