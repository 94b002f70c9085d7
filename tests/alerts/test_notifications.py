"""Alerts end to end: a real server evaluating rules, a real HTTP receiver, a real SMTP server.

The server's clock is a FakeClock: windows, `for` and retry backoff move only when
a test moves it; the evaluation loop itself runs every 0.2 s of real time.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets.sync.client as ws_client
from sqlalchemy import Engine, select

from nilemetrics.config import Settings
from nilemetrics.server.tables import alert_outbox_t, alert_state_t
from tests.alerts.conftest import INTERVAL, Mailbox, Receiver, rules_file, wait_until, with_alerts
from tests.api.journeys import P, nested_error, post, start, visit
from tests.api.test_metrics_endpoint import scrape, value
from tests.support import FakeClock, LiveServer, run_server

ERRORS_RULE = '''
[[rule]]
name = "payment errors"
metric = "payment_errors"
window = "5m"
above = 5
for = "0s"
notify = ["ops"]
'''

EMAIL, PHONE = "eve@example.com", "555-0199"


@pytest.fixture
def db_engine(settings: Settings) -> Any:
    """An engine on the test database, to look at the alert tables."""
    from nilemetrics.server.db import make_engine

    engine = make_engine(settings.effective_database_url())
    yield engine
    engine.dispose()


def fail_payments(client: httpx.Client, n: int, code: str = "card_declined",
                  sid: str | None = None) -> str:
    """``n`` payment errors of one customer (with email and phone), as the shop sends them."""
    sid = sid or start(client, email=EMAIL, phone=PHONE)
    for _ in range(n):
        post(client, "track/payment-error", nested_error(sid, code, "Your card was declined."))
    return sid


def ticks(n: int = 5) -> None:
    """Let the server evaluate ``n`` more times."""
    time.sleep(n * INTERVAL + 0.1)


def outbox(engine: Engine) -> list[Any]:
    """The outbox rows, oldest first."""
    with engine.connect() as conn:
        return list(conn.execute(select(alert_outbox_t).order_by(alert_outbox_t.c.id)))


def state_of(engine: Engine, rule: str) -> Any:
    """The stored state row of one rule."""
    with engine.connect() as conn:
        return conn.execute(select(alert_state_t).where(alert_state_t.c.rule == rule)).one()


def rules_api(live: LiveServer) -> dict[str, Any]:
    """GET /api/metrics/alerts."""
    response = httpx.get(f"{live.base_url}{P}/alerts", headers=live.auth, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_fires_once_holds_without_repeats_then_resolves(
    settings: Settings, clock: FakeClock, tmp_path: Path, receiver: Receiver, db_engine: Engine
) -> None:
    """Above the threshold: one firing notification, none while it holds, one resolved."""
    path = rules_file(tmp_path / "alerts.toml", ERRORS_RULE, f"ops = {receiver.url}")
    with run_server(with_alerts(settings, path), clock) as live, \
            httpx.Client(base_url=live.base_url, timeout=10) as client:
        sid = fail_payments(client, 5)
        ticks()
        assert receiver.received == []  # 5 is not above 5
        fail_payments(client, 1, code="insufficient_funds", sid=sid)
        [firing] = receiver.wait_for(1)
        assert firing.path == "/hook"
        assert firing.body["type"] == "failure"
        assert firing.title == "[FIRING] payment errors"
        assert firing.message == (
            "payment_errors is 6 over the last 5m: above 5.\n"
            "Firing since 2026-11-24 12:00:00 UTC.\n"
            "Top error codes (last 5m): card_declined 5, insufficient_funds 1\n"
            'Rule "payment errors", episode 1 - nilemetrics'
        )
        fail_payments(client, 3, sid=sid)  # still above: no repeat
        ticks(8)
        assert receiver.titles() == ["[FIRING] payment errors"]
        clock.advance(301)  # the errors leave the window
        _firing, resolved = receiver.wait_for(2)
        assert resolved.body["type"] == "success"
        assert resolved.title == "[RESOLVED] payment errors"
        assert resolved.message == (
            "payment_errors is 0 over the last 5m: no longer above 5.\n"
            "Fired from 2026-11-24 12:00:00 UTC to 2026-11-24 12:05:01 UTC (5m1s).\n"
            "Top error codes (last 5m): none\n"
            'Rule "payment errors", episode 1 - nilemetrics'
        )
        ticks()
        assert len(receiver.received) == 2
    # No contact data without include_contacts: not the email, the phone or the IP.
    everything = " ".join(str(item.body) for item in receiver.received)
    for personal in (EMAIL, PHONE, "127.0.0"):
        assert personal not in everything
    rows = outbox(db_engine)
    assert [(r.kind, r.status, r.attempts, r.episode) for r in rows] == [
        ("firing", "sent", 1, 1), ("resolved", "sent", 1, 1)]
    row = state_of(db_engine, "payment errors")
    assert (row.state, row.episode, row.value) == ("ok", 1, 0.0)


def test_for_delays_firing_until_the_condition_has_held(
    settings: Settings, clock: FakeClock, tmp_path: Path, receiver: Receiver
) -> None:
    """for = "2m": pending first (shown by the API), firing only once it held two minutes."""
    rule = ERRORS_RULE.replace('for = "0s"', 'for = "2m"').replace('"5m"', '"10m"')
    path = rules_file(tmp_path / "alerts.toml", rule, f"ops = {receiver.url}")
    with run_server(with_alerts(settings, path), clock) as live, \
            httpx.Client(base_url=live.base_url, timeout=10) as client:
        fail_payments(client, 6)
        wait_until(lambda: rules_api(live)["rules"][0]["state"] == "pending")
        [rule_state] = rules_api(live)["rules"]
        assert rule_state["since"] == "2026-11-24T12:00:00Z"
        assert (rule_state["value"], rule_state["forSeconds"]) == (6.0, 120.0)
        clock.advance(119)
        ticks()
        assert receiver.received == []
        clock.advance(1)
        [firing] = receiver.wait_for(1)
        assert "Firing since 2026-11-24 12:02:00 UTC (it held for 2m first)." in firing.message
        assert rules_api(live)["rules"][0]["state"] == "firing"


def test_repeat_reminds_while_firing(
    settings: Settings, clock: FakeClock, tmp_path: Path, receiver: Receiver
) -> None:
    """repeat = "1h": a STILL FIRING reminder after an hour, not before."""
    rule = ERRORS_RULE.replace('"5m"', '"3h"') + 'repeat = "1h"\n'
    path = rules_file(tmp_path / "alerts.toml", rule, f"ops = {receiver.url}")
    with run_server(with_alerts(settings, path), clock) as live, \
            httpx.Client(base_url=live.base_url, timeout=10) as client:
        fail_payments(client, 6)
        receiver.wait_for(1)
        clock.advance(1800)
        ticks()
        assert len(receiver.received) == 1
        clock.advance(1800)
        _first, reminder = receiver.wait_for(2)
        assert reminder.title == "[STILL FIRING] payment errors"
        assert reminder.body["type"] == "warning"
        assert "Still firing at 2026-11-24 13:00:00 UTC; reminded every 1h." in reminder.message
        ticks()
        assert len(receiver.received) == 2


def test_a_receiver_that_fails_then_recovers_gets_each_notification_once_in_order(
    settings: Settings, clock: FakeClock, tmp_path: Path, receiver: Receiver, db_engine: Engine
) -> None:
    """503s are retried with backoff; nothing is lost, nothing doubled, resolved after firing."""
    path = rules_file(tmp_path / "alerts.toml", ERRORS_RULE, f"ops = {receiver.url}")
    receiver.fail_next = 3
    with run_server(with_alerts(settings, path), clock) as live, \
            httpx.Client(base_url=live.base_url, timeout=10) as client:
        fail_payments(client, 6)
        receiver.wait_attempts(1)
        ticks()
        assert receiver.attempts == 1  # the retry waits for its backoff (0.2 s of server time)
        [pending] = rules_api(live)["pending"]
        assert (pending["kind"], pending["notifier"], pending["attempts"]) == ("firing", "ops", 1)
        assert "503" in pending["lastError"]
        clock.advance(301)  # resolved is queued behind the undelivered firing one
        receiver.wait_attempts(2)
        wait_until(lambda: len(rules_api(live)["pending"]) == 2)
        clock.advance(1)
        receiver.wait_attempts(3)
        # The server has recorded the third failure, so its 1 s backoff runs from the
        # time before the next advance (else the retry would wait for one more).
        wait_until(lambda: [p["attempts"] for p in rules_api(live)["pending"]] == [3, 0])
        clock.advance(1)
        received = receiver.wait_for(2)
        assert [item.title for item in received] == [
            "[FIRING] payment errors", "[RESOLVED] payment errors"]
        ticks()
        assert receiver.attempts == 5 and len(receiver.received) == 2
        assert rules_api(live)["pending"] == []
    rows = outbox(db_engine)
    assert [(r.kind, r.status, r.attempts, r.last_error) for r in rows] == [
        ("firing", "sent", 4, None), ("resolved", "sent", 1, None)]


def test_restart_mid_episode_neither_repeats_nor_loses(
    settings: Settings, clock: FakeClock, tmp_path: Path, receiver: Receiver
) -> None:
    """A restart while firing sends no second firing; one undelivered at stop is sent after."""
    path = rules_file(tmp_path / "alerts.toml", ERRORS_RULE, f"ops = {receiver.url}")
    alerting = with_alerts(settings, path)
    with run_server(alerting, clock) as live, \
            httpx.Client(base_url=live.base_url, timeout=10) as client:
        fail_payments(client, 6)
        receiver.wait_for(1)
    with run_server(alerting, clock):
        ticks(8)
        assert receiver.titles() == ["[FIRING] payment errors"]  # the same episode goes on
        receiver.fail_next = 1000  # the receiver goes down...
        clock.advance(301)
        receiver.wait_attempts(2)
    receiver.fail_next = 0  # ...and is back while no server runs
    with run_server(alerting, clock):
        clock.advance(1)
        received = receiver.wait_for(2)
        ticks(8)
    assert [item.title for item in received] == [
        "[FIRING] payment errors", "[RESOLVED] payment errors"]
    assert len(receiver.received) == 2


def test_contacts_only_when_the_rule_asks(
    settings: Settings, clock: FakeClock, tmp_path: Path, receiver: Receiver
) -> None:
    """include_contacts = true adds email, phone and IP; the same alert without it has none."""
    rules = ERRORS_RULE + ERRORS_RULE.replace('"payment errors"', '"with contacts"').replace(
        '["ops"]', '["team"]') + "include_contacts = true\n"
    notify = f"ops = {receiver.url}\nteam = json://127.0.0.1:{receiver.port}/team"
    path = rules_file(tmp_path / "alerts.toml", rules, notify)
    with run_server(with_alerts(settings, path), clock) as live, \
            httpx.Client(base_url=live.base_url, timeout=10) as client:
        fail_payments(client, 6)
        received = {item.path: item for item in receiver.wait_for(2)}
    plain, detailed = received["/hook"].message, received["/team"].message
    assert EMAIL not in plain and PHONE not in plain and "127.0.0" not in plain
    assert detailed.startswith("payment_errors is 6 over the last 5m: above 5.\n")
    assert "Contacts of the latest failed payments (include_contacts = true):" in detailed
    assert f"- card_declined | {EMAIL} | {PHONE} | 127.0.0.0" in detailed


def test_email_through_a_real_smtp_server(
    settings: Settings, clock: FakeClock, tmp_path: Path, mailbox: Mailbox
) -> None:
    """A mailto:// notifier delivers the firing alert as an e-mail, subject = title."""
    path = rules_file(tmp_path / "alerts.toml", ERRORS_RULE, f"ops = {mailbox.url()}")
    with run_server(with_alerts(settings, path), clock) as live, \
            httpx.Client(base_url=live.base_url, timeout=10) as client:
        fail_payments(client, 6)
        wait_until(lambda: len(mailbox.messages) >= 1, 15, lambda: "no e-mail")
        ticks()
    [mail] = mailbox.messages
    assert (mail.mail_from, mail.rcpt_tos) == ("alerts@shop.test", ["ops@shop.test"])
    content = mail.content.decode()
    assert "Subject: [FIRING] payment errors" in content
    assert "payment_errors is 6 over the last 5m: above 5." in content


def test_shop_down_alert_on_page_visits_below(
    settings: Settings, clock: FakeClock, tmp_path: Path, receiver: Receiver
) -> None:
    """page_visits below 1: fires while the shop sends no visits, resolves at the first one."""
    rule = '''
[[rule]]
name = "shop down"
metric = "page_visits"
window = "10m"
below = 1
notify = ["ops"]
'''
    path = rules_file(tmp_path / "alerts.toml", rule, f"ops = {receiver.url}")
    with run_server(with_alerts(settings, path), clock) as live, \
            httpx.Client(base_url=live.base_url, timeout=10) as client:
        [down] = receiver.wait_for(1)
        assert down.message.startswith("page_visits is 0 over the last 10m: below 1.\n")
        visit(client, start(client), "homepage")
        _down, up = receiver.wait_for(2)
        assert up.title == "[RESOLVED] shop down"
        assert up.message.startswith("page_visits is 1 over the last 10m: no longer below 1.")


def test_every_metric_reads_the_shared_numbers(
    settings: Settings, clock: FakeClock, tmp_path: Path, receiver: Receiver
) -> None:
    """Each metric's value is what the database says: rate, live sessions, codes, visits."""
    names = {
        "rate": ("payment_success_rate", 'window = "1h"\nbelow = 0.5'),
        # Both hold from the start (no sessions yet): `for` keeps them pending meanwhile.
        "live": ("live_sessions", 'below = 1\nfor = "1m"'),
        "declined": ("error_code:card_declined", 'window = "1h"\nabove = 5'),
        "errors": ("payment_errors", 'window = "1h"\nabove = 5'),
        "visits": ("page_visits", 'window = "1h"\nbelow = 1\nfor = "1m"'),
    }
    rules = "".join(
        f'[[rule]]\nname = "{name}"\nmetric = "{metric}"\n{condition}\nnotify = ["ops"]\n\n'
        for name, (metric, condition) in names.items()
    )
    path = rules_file(tmp_path / "alerts.toml", rules, f"ops = {receiver.url}")
    with run_server(with_alerts(settings, path), clock) as live, \
            httpx.Client(base_url=live.base_url, timeout=10) as client:
        sids = [start(client) for _ in range(3)]
        for sid in sids:
            visit(client, sid, "homepage")
            post(client, "track/checkout-start",
                 {"sessionId": sid, "checkoutItems": [{"name": "Mug"}], "totalAmount": 9})
        # In an order that never takes the success rate below 0.5 (1, 0.5, 1, 0.667):
        # the rule has no `for`, and an evaluation may fall between any two requests.
        post(client, "track/payment-success", {"sessionId": sids[2]})
        fail_payments(client, 1, "card_declined", sids[0])
        post(client, "track/payment-success", {"sessionId": sids[0]})  # failed, then paid
        fail_payments(client, 1, "insufficient_funds", sids[1])
        expected = {"rate": 0.6667, "live": 3.0, "declined": 1.0, "errors": 2.0, "visits": 3.0}

        def values() -> dict[str, Any]:
            return {rule["rule"]: rule["value"] for rule in rules_api(live)["rules"]}

        wait_until(lambda: values() == expected, 10, lambda: str(values()))
        live_metrics = client.get(f"{P}/live-metrics", headers=live.auth).json()
        assert live_metrics["paymentSuccessRate"] == 0.6667
        assert live_metrics["liveSessions"] == 3
        clock.advance(91)  # everyone leaves the live window
        wait_until(lambda: values()["live"] == 0.0, 10, lambda: str(values()))
        ticks()
        assert receiver.received == []  # pending for a minute first
        clock.advance(60)
        [gone] = receiver.wait_for(1)
        assert gone.title == "[FIRING] live"
        assert gone.message.startswith("live_sessions is 0 now: below 1.\n")
        assert "Top error codes (last 1h): card_declined 1, insufficient_funds 1" in gone.message
        ticks()
        assert len(receiver.received) == 1


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_two_servers_on_one_database_notify_once(
    settings: Settings, clock: FakeClock, tmp_path: Path, receiver: Receiver
) -> None:
    """Two processes evaluating the same rules on one PostgreSQL: one firing, one resolved."""
    path = rules_file(tmp_path / "alerts.toml", ERRORS_RULE, f"ops = {receiver.url}")
    alerting = with_alerts(settings, path)
    with run_server(alerting, clock) as a, run_server(alerting, clock) as b, \
            httpx.Client(base_url=a.base_url, timeout=10) as client:
        fail_payments(client, 6)
        receiver.wait_for(1)
        ticks(10)
        clock.advance(301)
        receiver.wait_for(2)
        ticks(10)
        assert receiver.titles() == ["[FIRING] payment errors", "[RESOLVED] payment errors"]
        engines = [a.server.config.app.state.alerts, b.server.config.app.state.alerts]
        assert sum(sum(engine.sent.values()) for engine in engines) == 2
        # Both evaluated all along (the lock only makes simultaneous ticks take turns).
        assert all(engine.ticks > 10 for engine in engines)


def _frame_until(ws: Any, predicate: Any, timeout: float = 10.0) -> dict[str, Any]:
    """Read WebSocket frames until a metrics-update whose data satisfies ``predicate``."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "no matching metrics-update"
        frame: dict[str, Any] = json.loads(ws.recv(timeout=remaining))
        if frame["event"] == "metrics-update" and predicate(frame["data"]):
            return frame


def _scrape_once_delivered(live: LiveServer, kind: str) -> Any:
    """Scrape /metrics until the ``kind`` notification is counted as sent."""
    seen: list[Any] = []

    def delivered() -> bool:
        samples, _families = scrape(live.base_url, live.auth)
        seen[:] = [samples]
        key = ("nilemetrics_alert_notifications_sent_total", (("kind", kind),))
        return bool(samples.get(key))

    wait_until(delivered, describe=lambda: f"no {kind} notification counted as sent")
    return seen[0]


def test_firing_alerts_reach_the_dashboard_feed_and_metrics(
    settings: Settings, clock: FakeClock, tmp_path: Path, receiver: Receiver
) -> None:
    """metrics-update and live-metrics carry the firing rules; /metrics has their state."""
    path = rules_file(tmp_path / "alerts.toml", ERRORS_RULE, f"ops = {receiver.url}")
    with run_server(with_alerts(settings, path), clock) as live, \
            httpx.Client(base_url=live.base_url, timeout=10) as client, \
            ws_client.connect(f"{live.ws_url}?token={live.token}") as ws:
        first = _frame_until(ws, lambda data: True)
        assert first["data"]["alerts"] == []
        fail_payments(client, 6)
        frame = _frame_until(ws, lambda data: bool(data["alerts"]))
        assert frame["data"]["alerts"] == [{
            "rule": "payment errors", "metric": "payment_errors", "value": 6.0,
            "threshold": 5.0, "direction": "above", "windowSeconds": 300.0,
            "since": "2026-11-24T12:00:00Z",
        }]
        assert client.get(f"{P}/live-metrics", headers=live.auth).json()["alerts"] == (
            frame["data"]["alerts"])
        receiver.wait_for(1)
        # The receiver has the POST before the server marks the outbox row sent.
        samples = _scrape_once_delivered(live, "firing")
        assert value(samples, "nilemetrics_alert_firing", rule="payment errors") == 1
        assert value(samples, "nilemetrics_alert_value", rule="payment errors") == 6
        assert value(samples, "nilemetrics_alert_notifications_pending") == 0
        assert value(samples, "nilemetrics_alert_notifications_sent_total", kind="firing") == 1
        assert value(samples, "nilemetrics_alert_evaluations_total", outcome="ran") >= 1
        clock.advance(301)
        _frame_until(ws, lambda data: data["alerts"] == [])
        receiver.wait_for(2)
        samples = _scrape_once_delivered(live, "resolved")
        assert value(samples, "nilemetrics_alert_firing", rule="payment errors") == 0
        assert value(samples, "nilemetrics_alert_notifications_sent_total", kind="resolved") == 1
