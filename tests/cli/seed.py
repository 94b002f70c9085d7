"""A small hand-made shop history whose report numbers are worked out by hand.

Times are relative to the real clock (the CLI commands use it): everything
recent happened within the last hour, session S6 100 days ago.

S1 alice@example.com (user u-alice, phone +491701111111): homepage 10 s,
   category shoes 30 s, product 20 s, checkout 15 s, payment 5 s; checkout C1
   100.00 failed once (card_declined) then paid. Ended.
S2 bob@example.com: homepage 20 s, category shoes 50 s, category hats 40 s.
   Ended without buying and without a checkout (left on category:hats; no abandonment point).
S3 anonymous: homepage 30 s, offer black-friday 60 s, checkout 10 s,
   payment 10 s, payment_error 5 s; checkout C3 50.00 failed twice
   (insufficient_funds), never paid. Ended (last page payment_error).
S4 Alice@Example.com (same person, other case): homepage 40 s, then an open
   product visit; idle for 45 minutes, still marked active.
S5 carol@example.com: homepage 12 s, checkout 8 s; checkout C5 20.00 paid at
   once; its basket and event payload name alice@example.com (a gift's recipient).
S6 dave@example.com, 100 days ago: homepage 25 s, checkout C6 10.00 failed
   (expired_card). Ended.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import insert

from nilemetrics.server.db import make_engine, migrate
from nilemetrics.server.tables import checkouts_t, errors_t, events_t, sessions_t, visits_t

ALICE = "alice@example.com"
ALICE_PHONE = "+491701111111"
BOB = "bob@example.com"
CAROL = "carol@example.com"
DAVE = "dave@example.com"


@dataclass
class Seeded:
    """Session ids by name and the reference time of the fixture."""

    now: datetime
    sessions: dict[str, str] = field(default_factory=dict)


def _sid() -> str:
    return str(uuid.uuid4())


def seed(url: str, now: datetime | None = None) -> Seeded:
    """Create the schema if needed and insert the fixture; return its session ids."""
    now = now or datetime.now(UTC)
    engine = make_engine(url)
    migrate(engine)
    out = Seeded(now=now)
    sessions: list[dict[str, Any]] = []
    visits: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []

    def session(name: str, start: datetime, *, email: str | None = None,
                phone: str | None = None, user_id: str | None = None, active: bool = False,
                last: datetime, page: tuple[str, str | None]) -> str:
        sid = _sid()
        out.sessions[name] = sid
        sessions.append({
            "session_id": sid, "user_id": user_id, "email": email, "phone": phone,
            "ip_address": "203.0.113.0", "user_agent": "pytest-browser", "is_active": active,
            "started_at": start, "last_activity": last, "ended_at": None if active else last,
            "current_page_type": page[0], "current_page_identifier": page[1],
        })
        payload: dict[str, Any] = {}
        if email:
            payload["email"] = email
        if phone:
            payload["phone"] = phone
        if user_id:
            payload["userId"] = user_id
        events.append({"event_id": uuid.uuid4().hex, "event_type": "session-start",
                       "session_id": sid, "occurred_at": start, "payload": payload})
        return sid

    def pages(sid: str, start: datetime, stays: list[tuple[str, str | None, float | None]]
              ) -> datetime:
        at = start
        for page_type, ident, seconds in stays:
            exited = None if seconds is None else at + timedelta(seconds=seconds)
            visits.append({
                "session_id": sid, "page_type": page_type, "page_identifier": ident,
                "page_url": f"https://shop.example/{page_type}", "entered_at": at,
                "exited_at": exited, "duration_seconds": seconds, "is_active": seconds is None,
            })
            events.append({"event_id": uuid.uuid4().hex, "event_type": "page-visit",
                           "session_id": sid, "occurred_at": at,
                           "payload": {"pageType": page_type, "pageIdentifier": ident}})
            at = exited or at
        return at

    t1 = now - timedelta(minutes=50)
    s1 = session("S1", t1, email=ALICE, phone=ALICE_PHONE, user_id="u-alice",
                 last=t1 + timedelta(seconds=80), page=("other", None))
    pages(s1, t1, [("homepage", None, 10), ("category", "shoes", 30), ("product", "p1", 20),
                   ("checkout", None, 15), ("payment", None, 5)])
    t2 = now - timedelta(minutes=40)
    session("S2", t2, email=BOB, last=t2 + timedelta(seconds=110), page=("category", "hats"))
    pages(out.sessions["S2"], t2, [("homepage", None, 20), ("category", "shoes", 50),
                                   ("category", "hats", 40)])
    t3 = now - timedelta(minutes=30)
    s3 = session("S3", t3, last=t3 + timedelta(seconds=115), page=("payment_error", None))
    pages(s3, t3, [("homepage", None, 30), ("offer", "black-friday", 60), ("checkout", None, 10),
                   ("payment", None, 10), ("payment_error", None, 5)])
    t4 = now - timedelta(minutes=50)
    s4 = session("S4", t4, email="Alice@Example.com", active=True,
                 last=now - timedelta(minutes=45), page=("product", "p2"))
    pages(s4, t4, [("homepage", None, 40), ("product", "p2", None)])
    t5 = now - timedelta(minutes=20)
    s5 = session("S5", t5, email=CAROL, last=t5 + timedelta(seconds=25), page=("other", None))
    pages(s5, t5, [("homepage", None, 12), ("checkout", None, 8)])
    t6 = now - timedelta(days=100)
    s6 = session("S6", t6, email=DAVE, last=t6 + timedelta(seconds=40), page=("checkout", None))
    pages(s6, t6, [("homepage", None, 25), ("checkout", None, 15)])

    with engine.begin() as conn:
        conn.execute(insert(sessions_t), sessions)
        conn.execute(insert(visits_t), visits)

        def checkout(sid: str, at: datetime, total: str, items: list[Any], *, status: str,
                     errors: int, paid: bool, email: str | None = None,
                     phone: str | None = None, user_id: str | None = None) -> int:
            return int(conn.execute(
                insert(checkouts_t).values(
                    session_id=sid, user_id=user_id, email=email, phone=phone,
                    checkout_items=items, total_amount=Decimal(total), payment_method="card",
                    status=status, error_count=errors, started_at=at,
                    payment_started_at=at + timedelta(seconds=10),
                    payment_error_at=at + timedelta(seconds=12) if errors else None,
                    completed_at=at + timedelta(seconds=20) if paid else None,
                    updated_at=at + timedelta(seconds=20),
                ).returning(checkouts_t.c.id)
            ).scalar_one())

        def error(sid: str, checkout_id: int, at: datetime, code: str, amount: str,
                  attempt: int, extra: dict[str, Any] | None = None) -> None:
            details = {"errorCode": code, "errorMessage": f"declined: {code}",
                       "url": "https://shop.example/checkout/payment", **(extra or {})}
            conn.execute(insert(errors_t).values(
                checkout_id=checkout_id, session_id=sid, attempt=attempt, error_code=code,
                error_message=f"declined: {code}", error_details=details,
                amount=Decimal(amount), payment_method="card",
                page_url="https://shop.example/checkout/payment", ip_address="203.0.113.0",
                user_agent="pytest-browser", occurred_at=at,
            ))

        c1 = checkout(s1, t1 + timedelta(seconds=60), "100.00",
                      [{"id": "p1", "name": "Shoes", "price": 100.0, "quantity": 1}],
                      status="completed", errors=1, paid=True, email=ALICE, phone=ALICE_PHONE,
                      user_id="u-alice")
        error(s1, c1, t1 + timedelta(seconds=72), "card_declined", "100.00", 1,
              {"customerEmail": ALICE})
        c3 = checkout(s3, t3 + timedelta(seconds=100), "50.00",
                      [{"id": "p3", "name": "Hat", "price": 25.0, "quantity": 2}],
                      status="failed", errors=2, paid=False)
        error(s3, c3, t3 + timedelta(seconds=112), "insufficient_funds", "50.00", 1)
        error(s3, c3, t3 + timedelta(seconds=114), "insufficient_funds", "50.00", 2)
        gift = [{"id": "p9", "name": "Gift card", "price": 20.0, "quantity": 1,
                 "recipient": ALICE, "note": "happy birthday"}]
        checkout(s5, t5 + timedelta(seconds=12), "20.00", gift, status="completed", errors=0,
                 paid=True, email=CAROL)
        events.append({"event_id": uuid.uuid4().hex, "event_type": "checkout-start",
                       "session_id": s5, "occurred_at": t5 + timedelta(seconds=12),
                       "payload": {"checkoutItems": gift, "totalAmount": "20.00"}})
        c6 = checkout(s6, t6 + timedelta(seconds=25), "10.00",
                      [{"id": "p6", "name": "Socks", "price": 10.0, "quantity": 1}],
                      status="failed", errors=1, paid=False, email=DAVE)
        error(s6, c6, t6 + timedelta(seconds=37), "expired_card", "10.00", 1)
        conn.execute(insert(events_t), events)
    engine.dispose()
    return out
