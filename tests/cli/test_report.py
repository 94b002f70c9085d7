"""`nilemetrics report` against the hand-computed fixture (tests/cli/seed.py)."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import insert

from nilemetrics.server.db import make_engine
from nilemetrics.server.tables import visits_t
from tests.cli.conftest import Invoke
from tests.cli.seed import seed


def test_report_json_matches_hand_computed_numbers(database_url: str, nm: Invoke) -> None:
    """Every analysis of --json equals the numbers worked out by hand from the fixture."""
    seed(database_url)
    result = nm("report", "--since", "24h", "--json", "--database-url", database_url)
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["timeOnPage"]["byPageType"] == [
        {"pageType": "homepage", "visits": 5, "avgSeconds": 22.4},
        {"pageType": "category", "visits": 3, "avgSeconds": 40.0},
        {"pageType": "checkout", "visits": 3, "avgSeconds": 11.0},
        {"pageType": "payment", "visits": 2, "avgSeconds": 7.5},
        {"pageType": "offer", "visits": 1, "avgSeconds": 60.0},
        {"pageType": "payment_error", "visits": 1, "avgSeconds": 5.0},
        {"pageType": "product", "visits": 1, "avgSeconds": 20.0},
    ]
    assert body["timeOnPage"]["byCategory"] == [
        {"identifier": "shoes", "visits": 2, "avgSeconds": 40.0},
        {"identifier": "hats", "visits": 1, "avgSeconds": 40.0},
    ]
    assert body["timeOnPage"]["byOffer"] == [
        {"identifier": "black-friday", "visits": 1, "avgSeconds": 60.0}
    ]
    assert body["funnel"] == [
        {"step": "sessions", "sessions": 5, "dropOff": None, "dropOffRate": None,
         "conversion": 1.0},
        {"step": "checkout", "sessions": 3, "dropOff": 2, "dropOffRate": 0.4,
         "conversion": 0.6},
        {"step": "payment", "sessions": 3, "dropOff": 0, "dropOffRate": 0.0,
         "conversion": 0.6},
        {"step": "success", "sessions": 2, "dropOff": 1, "dropOffRate": 0.3333,
         "conversion": 0.4},
    ]
    assert body["abandonment"] == [
        {"pageType": "payment_error", "pageIdentifier": None, "sessions": 1, "share": 1.0},
    ]
    assert body["paymentErrors"] == [
        {"errorCode": "insufficient_funds", "errors": 2, "checkouts": 1,
         "amountAtStake": "50.00", "amountRecovered": "0.00"},
        {"errorCode": "card_declined", "errors": 1, "checkouts": 1,
         "amountAtStake": "100.00", "amountRecovered": "100.00"},
    ]
    assert body["retries"] == {
        "failedCheckouts": 2,
        "succeededAfterRetry": 1,
        "succeededAfterRetryRate": 0.5,
        "byFailures": [
            {"failures": 1, "checkouts": 1, "succeeded": 1, "shareOfFailedCheckouts": 0.5},
            {"failures": 2, "checkouts": 1, "succeeded": 0, "shareOfFailedCheckouts": 0.0},
        ],
    }
    assert body["paymentSuccess"] == {
        "checkouts": 3, "checkoutsWithOutcome": 3, "paid": 2, "successRate": 0.6667,
        "paymentAttempts": 5, "attemptSuccessRate": 0.4,
    }


def test_report_longer_period_includes_old_history(database_url: str, nm: Invoke) -> None:
    """--since 365d takes in the 100-day-old session S6 and its expired_card error."""
    seed(database_url)
    result = nm("report", "--since", "365d", "--json", "--database-url", database_url)
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["funnel"][0]["sessions"] == 6
    codes = {row["errorCode"]: row for row in body["paymentErrors"]}
    assert codes["expired_card"]["amountAtStake"] == "10.00"
    assert body["retries"]["failedCheckouts"] == 3


def test_report_tables_show_the_analyses(database_url: str, nm: Invoke) -> None:
    """Without --json the report prints one Rich table per analysis with the numbers."""
    seed(database_url)
    result = nm("report", "--database-url", database_url)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for title in ("Average time on page", "Average time per category", "Conversion funnel",
                  "Abandonment points", "Payment errors by code", "Retries: 1 of 2",
                  "Payment success"):
        assert title in out
    assert "insufficient_funds" in out and "50.00" in out
    assert "66.7%" in out  # per-checkout success rate
    # Only S3 left with an unpaid checkout; S2 left on category:hats without one.
    abandonment = out[out.index("Abandonment points"):out.index("Payment errors by code")]
    assert "payment_error" in abandonment and "100.0%" in abandonment
    assert "hats" not in abandonment


def test_report_empty_period(database_url: str, nm: Invoke) -> None:
    """A period with no activity reports zeros and no rates, not an error."""
    seed(database_url)
    result = nm("report", "--since", "2020-01-01T00:00:00Z", "--until", "2020-01-02",
                "--json", "--database-url", database_url)
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["funnel"][0]["sessions"] == 0
    assert body["paymentSuccess"]["successRate"] is None
    assert body["timeOnPage"]["byPageType"] == []


def test_report_includes_page_types_nobody_listed(database_url: str, nm: Invoke) -> None:
    """Time on page covers every stored page type, such as the client's product_listing."""
    fixture = seed(database_url)
    engine = make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(insert(visits_t), [
            {"session_id": fixture.sessions["S2"], "page_type": page_type,
             "entered_at": fixture.now - timedelta(minutes=5), "duration_seconds": seconds,
             "exited_at": fixture.now - timedelta(minutes=4), "is_active": False}
            for page_type, seconds in (("product_listing", 30.0), ("product_listing", 10.0),
                                       ("Gift-Cards", 4.0))
        ])
    engine.dispose()
    result = nm("report", "--since", "24h", "--json", "--database-url", database_url)
    assert result.exit_code == 0, result.output
    by_type = json.loads(result.stdout)["timeOnPage"]["byPageType"]
    assert {"pageType": "product_listing", "visits": 2, "avgSeconds": 20.0} in by_type
    assert {"pageType": "Gift-Cards", "visits": 1, "avgSeconds": 4.0} in by_type
    assert len(by_type) == 9


def test_report_until_before_since_is_an_error(nm: Invoke) -> None:
    """--since 1h --until 2h (an empty period) is one clear error, not empty tables."""
    result = nm("report", "--since", "1h", "--until", "2h")
    assert result.exit_code == 1
    assert result.stdout == ""
    line = result.stderr.strip()
    assert line.startswith("error: --until (") and "is not after --since (" in line
    assert line.endswith("so --since 2h --until 1h is the hour before last")
