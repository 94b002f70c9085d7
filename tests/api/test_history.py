"""History rollups over real HTTP: GET /history, replay snapshots, catch-up, folding, purge."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from nilemetrics.config import Settings
from nilemetrics.server.retention import purge, purgeable
from nilemetrics.server.rollups import rollup_columns
from nilemetrics.server.tables import rollups_t
from tests.api.journeys import P, nested_error, post, start, visit
from tests.support import FakeClock, LiveServer, run_server

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fast_rollups(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rollup tick every 50 ms (the fake clock says which minute it is)."""
    monkeypatch.setenv("NILEMETRICS_ROLLUP_INTERVAL", "0.05")


def wait_for(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """``check()``'s first truthy value, polling; fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not true within {timeout} s")


def rollup(db: Engine, resolution: str, at: datetime) -> Any:
    """The rollup row of one bucket, or None."""
    c = rollups_t.c
    with db.connect() as conn:
        return conn.execute(
            select(rollups_t).where((c.resolution == resolution) & (c.bucket_start == at))
        ).first()


def counted(db: Engine, at: datetime) -> bool:
    """Whether the minute starting at ``at`` has been counted."""
    row = rollup(db, "minute", at)
    return row is not None and bool(row.complete)


def history(client: httpx.Client, server: LiveServer, **params: str) -> httpx.Response:
    """GET /history with the token."""
    return client.get(f"{P}/history", params=params, headers=server.auth)


def sampled(db: Engine, at: datetime) -> bool:
    """Whether the live numbers of the minute starting at ``at`` have been sampled."""
    row = rollup(db, "minute", at)
    return row is not None and row.live_sessions is not None


def shop_minute(client: httpx.Client, server: LiveServer, db: Engine) -> str:
    """12:00: Ann browses; 12:01 (once sampled, Ann on a category page): she checks out,
    fails once (card_declined), pays."""
    ann = start(client, email="ann@example.com")
    visit(client, ann, "homepage")
    visit(client, ann, "category", "shoes")
    server.clock.advance(60)
    if server.settings.rollups:
        wait_for(lambda: sampled(db, T0 + timedelta(minutes=1)))
    post(client, "track/checkout-start", {"sessionId": ann, "totalAmount": "25.50",
                                          "checkoutItems": [{"name": "Boot"}]})
    post(client, "track/payment-error", nested_error(ann, "card_declined", "Declined"))
    post(client, "track/payment-success", {"sessionId": ann})
    return ann


ZERO_POINT = {
    "liveSessions": 0, "pages": {}, "sessionsStarted": 0, "pageVisits": 0,
    "checkoutsStarted": 0, "paymentErrors": 0, "paymentErrorsByCode": {},
    "paymentSuccesses": 0, "amountPaid": 0.0, "amountFailed": 0.0,
}


def test_history_per_minute_from_rollups(
    client: httpx.Client, server: LiveServer, db: Engine
) -> None:
    """Each minute's counts and live sample land in a rollup; /history serves every bucket."""
    shop_minute(client, server, db)
    server.clock.advance(65)  # 12:02:05: minute 12:01 is over (and settled)
    wait_for(lambda: counted(db, T0 + timedelta(minutes=1)))

    answer = history(client, server, since="2026-11-24T12:00:00Z",
                     until="2026-11-24T12:04:00Z", step="1m")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["since"], body["until"], body["step"]) == (
        "2026-11-24T12:00:00Z", "2026-11-24T12:04:00Z", "1m")
    points = body["points"]
    assert [p["at"] for p in points] == [f"2026-11-24T12:0{i}:00Z" for i in range(4)]
    assert points[0] == {**ZERO_POINT, "at": "2026-11-24T12:00:00Z", "sessionsStarted": 1,
                         "pageVisits": 2}
    assert points[1] == {
        **ZERO_POINT, "at": "2026-11-24T12:01:00Z", "liveSessions": 1,
        "pages": {"category": 1}, "checkoutsStarted": 1, "paymentErrors": 1,
        "paymentErrorsByCode": {"card_declined": 1}, "paymentSuccesses": 1,
        "amountPaid": 25.5, "amountFailed": 25.5,
    }
    # 12:02 is sampled (Ann still live) but not over: counted on the spot.
    wait_for(lambda: sampled(db, T0 + timedelta(minutes=2)))
    points = history(client, server, since="2026-11-24T12:00:00Z",
                     until="2026-11-24T12:04:00Z", step="1m").json()["points"]
    assert (points[2]["liveSessions"], points[2]["pageVisits"]) == (1, 0)
    assert points[3] == {**ZERO_POINT, "at": "2026-11-24T12:03:00Z"}
    # The stored rollup holds the same counts the answer shows.
    row = rollup(db, "minute", T0 + timedelta(minutes=1))
    assert (row.checkouts_started, row.payment_errors, row.payment_successes,
            str(row.amount_paid), row.payment_errors_by_code) == (
        1, 1, 1, "25.50", {"card_declined": 1})

    five = history(client, server, since="2026-11-24T12:03:00Z",
                   until="2026-11-24T12:04:00Z", step="5m").json()
    assert five["since"] == "2026-11-24T12:00:00Z" and len(five["points"]) == 1
    assert five["points"][0]["pageVisits"] == 2
    assert five["points"][0]["paymentSuccesses"] == 1


def test_replay_snapshot_and_errors_as_of_a_minute(
    client: httpx.Client, server: LiveServer, db: Engine
) -> None:
    """history/snapshot gives the live numbers of a past minute; payment-errors?until= its table."""
    shop_minute(client, server, db)
    server.clock.advance(120)

    answer = client.get(f"{P}/history/snapshot", params={"at": "2026-11-24T12:01:30Z"},
                        headers=server.auth)
    assert answer.status_code == 200, answer.text
    then = answer.json()
    assert (then["liveSessions"], then["categories"], then["pages"]) == (
        1, {"shoes": 1}, {"category": 1})
    assert then["lastUpdated"] == "2026-11-24T12:01:00Z"
    assert then["paymentErrorsLastHour"] == 0  # the error came later in that minute
    # Counts only: the body has no contact field anywhere.
    assert "ann@example.com" not in answer.text

    missing = client.get(f"{P}/history/snapshot", params={"at": "2026-11-20T03:10:00Z"},
                         headers=server.auth)
    assert missing.status_code == 404
    assert missing.json()["detail"] == (
        "no live numbers recorded for the minute of 2026-11-20T03:10:00Z: no server was "
        "sampling then")

    post(client, "track/payment-error", nested_error(start(client), "expired_card", "Expired"))
    now_rows = client.get(f"{P}/payment-errors", headers=server.auth).json()
    assert [r["error_code"] for r in now_rows] == ["expired_card", "card_declined"]
    then_rows = client.get(f"{P}/payment-errors", params={"until": "2026-11-24T12:02:00Z"},
                           headers=server.auth).json()
    assert [r["error_code"] for r in then_rows] == ["card_declined"]
    bad = client.get(f"{P}/payment-errors", params={"since": "2026-11-24T12:02:00Z",
                                                    "until": "2026-11-24T12:01:00Z"},
                     headers=server.auth)
    assert (bad.status_code, bad.json()["detail"]) == (422, "until: must be after since")


@pytest.mark.parametrize(("params", "detail"), [
    ({"since": "2026-11-24T12:00:00Z", "until": "2026-11-24T11:00:00Z"},
     "until: must be after since (since 2026-11-24T12:00:00Z, until 2026-11-24T11:00:00Z)"),
    ({"since": "2026-11-01T00:00:00Z", "until": "2026-11-24T12:00:00Z", "step": "1m"},
     "step: 33840 buckets of 1m from since to until; at most 5000 (choose a larger step or "
     "a shorter range)"),
    ({"since": "1990-01-01T00:00:00Z", "step": "1d"}, "since: must be in the year 2000 or later"),
    # The last bucket of the year 9999 would end past datetime's range (was a 500).
    ({"since": "9999-12-31T00:00:00Z", "until": "9999-12-31T23:59:59Z"},
     "since: must be before the year 9000"),
    ({"since": "yesterday"}, None),
    ({"step": "2m"}, None),
])
def test_history_refuses_bad_ranges(
    client: httpx.Client, server: LiveServer, params: dict[str, str], detail: str | None
) -> None:
    """An empty or reversed range, too many buckets, a bad time or step: 422 naming it."""
    answer = history(client, server, **params)
    assert answer.status_code == 422, answer.text
    if detail is not None:
        assert answer.json()["detail"] == detail
    else:
        assert answer.json()["detail"].startswith(next(iter(params)) + ": ")


def test_history_requires_token(client: httpx.Client) -> None:
    """History and replay carry the shop's figures: a token is needed."""
    for path in ("history", "history/snapshot?at=2026-11-24T12:00:00Z", "report"):
        assert client.get(f"{P}/{path}").status_code == 401


def test_catch_up_after_downtime_and_hour_rows(
    settings: Settings, clock: FakeClock, db: Engine
) -> None:
    """Minutes that passed while no server ran are counted at the next start; hours fold."""
    quiet = settings.model_copy(update={"rollups": False})
    with run_server(quiet, clock) as first, httpx.Client(base_url=first.base_url) as client:
        shop_minute(client, first, db)
        clock.advance(30)
    assert rollup(db, "minute", T0) is None  # nothing was rolled up
    clock.advance(3 * 3600)  # down for three hours
    with run_server(settings, clock) as second, httpx.Client(
        base_url=second.base_url
    ) as client:
        # 15:01:30 now: every minute up to 15:00 is counted, hours 12, 13 and 14 fold.
        wait_for(lambda: rollup(db, "hour", T0 + timedelta(hours=2)))
        first_minute, second_minute = (rollup(db, "minute", T0 + timedelta(minutes=m))
                                       for m in (0, 1))
        assert (first_minute.complete, first_minute.sessions_started,
                first_minute.page_visits, first_minute.live_sessions) == (True, 1, 2, None)
        assert (second_minute.payment_errors, second_minute.payment_successes) == (1, 1)
        assert counted(db, T0 + timedelta(hours=2, minutes=59))
        hour = rollup(db, "hour", T0)
        assert (hour.sessions_started, hour.page_visits, hour.checkouts_started,
                hour.payment_errors, hour.payment_errors_by_code, str(hour.amount_paid),
                hour.live_sessions) == (1, 2, 1, 1, {"card_declined": 1}, "25.50", None)
        quiet_hour = rollup(db, "hour", T0 + timedelta(hours=1))
        assert (quiet_hour.page_visits, quiet_hour.sessions_started) == (0, 0)

        hours = history(client, second, since="2026-11-24T12:00:00Z",
                        until="2026-11-24T15:00:00Z", step="1h").json()["points"]
        assert [(p["at"], p["pageVisits"], p["paymentSuccesses"]) for p in hours] == [
            ("2026-11-24T12:00:00Z", 2, 1), ("2026-11-24T13:00:00Z", 0, 0),
            ("2026-11-24T14:00:00Z", 0, 0)]
        day = history(client, second, since="2026-11-24T00:00:00Z", step="1d").json()
        assert [(p["at"], p["sessionsStarted"], p["amountFailed"]) for p in day["points"]] == [
            ("2026-11-24T00:00:00Z", 1, 25.5)]


def test_minutes_fold_into_hours_after_14_days_and_purge_covers_rollups(
    settings: Settings, clock: FakeClock, db: Engine
) -> None:
    """After 14 days minute rows go, hour rows keep the counts; a purge removes old rollups."""
    with run_server(settings, clock) as server, httpx.Client(base_url=server.base_url) as client:
        shop_minute(client, server, db)
        clock.advance(15 * 86400)  # fifteen days on: T0's minutes are past keeping
        wait_for(lambda: rollup(db, "hour", T0 + timedelta(days=15) - timedelta(hours=1)),
                 timeout=60)
        wait_for(lambda: rollup(db, "minute", T0 + timedelta(minutes=1)) is None)
        hour = rollup(db, "hour", T0)
        assert (hour.sessions_started, hour.page_visits, hour.payment_successes,
                hour.live_sessions, hour.pages) == (1, 2, 1, 1, {"category": 1})
        # A fine step over folded history shows each hour where it starts.
        minutes = history(client, server, since="2026-11-24T12:00:00Z",
                          until="2026-11-24T12:05:00Z", step="1m").json()["points"]
        assert [p["pageVisits"] for p in minutes] == [2, 0, 0, 0, 0]
        assert minutes[0]["liveSessions"] == 1
        gone = client.get(f"{P}/history/snapshot", params={"at": "2026-11-24T12:01:00Z"},
                          headers=server.auth)
        assert gone.status_code == 404
        assert gone.json()["detail"].endswith("it is older than the 14 days minutes are kept")

    cutoff = T0 + timedelta(days=1)
    ended = cutoff - timedelta(hours=1)  # hour rows starting before it ended before the cutoff

    def hour_starts() -> list[datetime]:
        with db.connect() as conn:
            return [row.bucket_start for row in conn.execute(
                select(rollups_t.c.bucket_start).order_by(rollups_t.c.bucket_start))]

    old = [at for at in hour_starts() if at < ended]
    assert T0 in old and T0 + timedelta(hours=22) in old  # 12:00 to 10:00 the next day
    with db.connect() as conn:
        assert purgeable(conn, cutoff)["metric_rollups"] == len(old)
    with db.connect() as conn:
        assert purge(conn, cutoff)["metric_rollups"] == len(old)
    kept = hour_starts()
    assert kept[0] == ended and len(kept) > 13 * 24  # the newer hours stay


def test_rollups_hold_no_personal_data() -> None:
    """No rollup column can hold an email, phone, IP or user agent (forget never looks here)."""
    names = set(rollup_columns())
    for personal in ("email", "phone", "ip_address", "user_agent", "user_id", "session_id"):
        assert personal not in names
    assert {"bucket_start", "live_sessions", "payment_errors_by_code"} <= names
