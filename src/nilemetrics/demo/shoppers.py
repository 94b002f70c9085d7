"""Simulated shoppers speaking the shop client's exact HTTP payloads.

Each shopper opens a session, browses (homepage, categories, offers, products,
search), sometimes checks out and pays, fails with realistic card decline codes,
retries or gives up, and leaves; the session heartbeats every 30 s while open,
as the real client does. ``speed`` compresses all waiting (demo and benchmarks).
Used by ``nilemetrics simulate`` and ``nilemetrics demo``; the demo shop takes its decline codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from nilemetrics.protocol import API_PREFIX

if TYPE_CHECKING:
    import httpx

HEARTBEAT_SECONDS = 30.0
MAX_SHOPPERS = 2000
MAX_DURATION = 24 * 3600.0

CATEGORIES = ("electronics", "fashion", "home-garden", "books", "toys", "sports")
OFFERS = ("black-friday", "summer-sale", "bundle-deal")
PRODUCTS: tuple[tuple[str, str, Decimal], ...] = (
    ("p-1001", "Wireless Headphones", Decimal("89.99")),
    ("p-1002", "Running Shoes", Decimal("74.50")),
    ("p-1003", "Coffee Grinder", Decimal("39.90")),
    ("p-1004", "Desk Lamp", Decimal("24.99")),
    ("p-1005", "Yoga Mat", Decimal("19.95")),
    ("p-1006", "Board Game", Decimal("34.00")),
    ("p-1007", "Rain Jacket", Decimal("119.00")),
    ("p-1008", "Paperback Novel", Decimal("12.49")),
)
PAYMENT_METHODS = ("card", "card", "card", "paypal", "apple_pay")
#: Card decline codes as payment providers report them, with rough frequencies.
DECLINES: tuple[tuple[str, str, int], ...] = (
    ("card_declined", "Your card was declined.", 40),
    ("insufficient_funds", "Your card has insufficient funds.", 25),
    ("expired_card", "Your card has expired.", 8),
    ("incorrect_cvc", "Your card's security code is incorrect.", 12),
    ("processing_error",
     "An error occurred while processing your card. Try again in a little bit.", 8),
    ("authentication_required",
     "Your card was declined. This transaction requires authentication.", 7),
)
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
)
SHOP = "https://shop.example"


def check_loopback(url: str) -> str:
    """The URL without a trailing slash if it names this machine; else ValueError.

    The simulator generates load: it must never be pointed at somebody's shop.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid URL {url!r}: use http://127.0.0.1:PORT")
    host = parts.hostname
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(
                f"{host} is not a loopback address: the simulator only targets this machine "
                "(localhost, 127.0.0.0/8, ::1)"
            )
    return url.rstrip("/")


@dataclass
class SimulationConfig:
    """How many shoppers, for how long, how often payments fail."""

    url: str
    shoppers: int = 50
    duration: float = 60.0
    error_rate: float = 0.1
    seed: int | None = None
    speed: float = 1.0
    checkout_rate: float = 0.4
    logged_in_rate: float = 0.3


@dataclass
class SimulationStats:
    """Counters of what the shoppers did (read by the demo while running)."""

    sessions: int = 0
    stray_sessions: int = 0
    page_visits: int = 0
    heartbeats: int = 0
    checkouts: int = 0
    payment_errors: int = 0
    payments: int = 0
    abandoned: int = 0
    requests: int = 0
    failures: int = 0
    active: int = 0
    error_codes: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    def record_latency(self, seconds: float, rng: random.Random) -> None:
        """Keep a bounded uniform sample of request latencies (reservoir)."""
        if len(self.latencies) < 10_000:
            self.latencies.append(seconds)
        else:
            slot = rng.randrange(self.requests)
            if slot < 10_000:
                self.latencies[slot] = seconds

    def summary(self) -> dict[str, Any]:
        """Totals, rates and latency percentiles, JSON-ready."""
        elapsed = (self.finished or time.monotonic()) - self.started
        ordered = sorted(self.latencies)

        def pct(p: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 1)

        return {
            "sessions": self.sessions,
            "straySessions": self.stray_sessions,
            "pageVisits": self.page_visits,
            "heartbeats": self.heartbeats,
            "checkouts": self.checkouts,
            "paymentErrors": self.payment_errors,
            "payments": self.payments,
            "abandonedCheckouts": self.abandoned,
            "requests": self.requests,
            "failedRequests": self.failures,
            "requestsPerSecond": round(self.requests / elapsed, 1) if elapsed > 0 else 0.0,
            "latencyP50Ms": pct(0.50),
            "latencyP95Ms": pct(0.95),
            "errorCodes": dict(self.error_codes.most_common()),
            "elapsedSeconds": round(elapsed, 1),
        }


class _Stop(Exception):
    """The simulation's time is up (or it was told to stop)."""


class _Shopper:
    def __init__(
        self,
        client: httpx.AsyncClient,
        config: SimulationConfig,
        stats: SimulationStats,
        rng: random.Random,
        deadline: float,
        should_stop: Callable[[], bool],
        number: int,
    ) -> None:
        self.client = client
        self.config = config
        self.stats = stats
        self.rng = rng
        self.deadline = deadline
        self.should_stop = should_stop
        self.number = number
        self.user_agent = rng.choice(USER_AGENTS)

    def _over(self) -> bool:
        return self.should_stop() or time.monotonic() >= self.deadline

    async def pause(self, seconds: float) -> None:
        """Wait (compressed by ``speed``), in short steps so a stop is noticed quickly."""
        end = time.monotonic() + seconds / self.config.speed
        while True:
            if self._over():
                raise _Stop
            left = end - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.2))

    async def post(
        self, path: str, body: dict[str, Any] | None, *, beacon: bool = False
    ) -> dict[str, Any] | None:
        """POST as the shop's client does; None when the server refused or failed."""
        headers = {"User-Agent": self.user_agent, "Origin": SHOP}
        if beacon:
            # navigator.sendBeacon(url, JSON.stringify(body)) sends text/plain.
            headers["Content-Type"] = "text/plain;charset=UTF-8"
        else:
            headers["Content-Type"] = "application/json"
        # JSON.stringify output; session/start of an anonymous visitor has no body at all.
        content = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        import httpx  # already loaded by simulate(); kept out of CLI start-up

        self.stats.requests += 1
        began = time.perf_counter()
        try:
            response = await self.client.post(
                f"{API_PREFIX}{path}", content=content, headers=headers
            )
        except httpx.HTTPError:
            self.stats.failures += 1
            return None
        self.stats.record_latency(time.perf_counter() - began, self.rng)
        if response.status_code >= 400:
            self.stats.failures += 1
            return None
        try:
            answer: dict[str, Any] = response.json()
        except ValueError:
            return {}
        return answer

    async def visit(self, session_id: str, page_type: str, identifier: str | None = None,
                    path: str = "/") -> None:
        """Report a page view (what the client sends on every route change)."""
        body: dict[str, Any] = {"sessionId": session_id, "pageType": page_type,
                                "pageUrl": f"{SHOP}{path}"}
        if identifier is not None:
            body["pageIdentifier"] = identifier
        if await self.post("/track/page-visit", body) is not None:
            self.stats.page_visits += 1

    async def heartbeat(self, session_id: str) -> None:
        """Heartbeat every 30 s while the session is open (the client's interval)."""
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS / self.config.speed)
            if await self.post("/session/heartbeat", {"sessionId": session_id}) is not None:
                self.stats.heartbeats += 1

    async def run(self) -> None:
        """Shop, one session after another, until the time is up."""
        # Shoppers arrive spread out, not all in the first millisecond.
        try:
            await self.pause(self.rng.uniform(0, min(5.0, self.config.duration / 4)))
            while not self._over():
                await self.session()
                await self.pause(self.rng.uniform(0.5, 3.0))
        except _Stop:
            return

    async def session(self) -> None:
        """One visit to the shop, from session/start to session/end."""
        logged_in = self.rng.random() < self.config.logged_in_rate
        body = None
        if logged_in:
            n = self.rng.randrange(1, 100_000)
            body = {"userId": str(n), "email": f"shopper{n}@example.test"}
        # The shop's client starts a session in its constructor, and its first page
        # visit, racing that answer, starts another: the first never reports a page.
        if await self.post("/session/start", None) is not None:
            self.stats.stray_sessions += 1
        answer = await self.post("/session/start", body)
        if not answer or "sessionId" not in answer:
            await self.pause(1.0)
            return
        sid = str(answer["sessionId"])
        self.stats.sessions += 1
        self.stats.active += 1
        beat = asyncio.create_task(self.heartbeat(sid))
        try:
            await self.browse(sid)
        except _Stop:
            pass
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            self.stats.active -= 1
            # Leaving: the client's pagehide handler beacons session/end.
            await self.post("/session/end", {"sessionId": sid}, beacon=True)

    async def browse(self, sid: str) -> None:
        """Homepage, a few category/offer/product/search pages, maybe a checkout."""
        rng = self.rng
        await self.visit(sid, "homepage", path="/")
        await self.pause(rng.uniform(2, 10))
        for _ in range(rng.randint(1, 5)):
            roll = rng.random()
            if roll < 0.45:
                cat = rng.choice(CATEGORIES)
                await self.visit(sid, "category", cat, f"/c/{cat}")
            elif roll < 0.6:
                offer = rng.choice(OFFERS)
                await self.visit(sid, "offer", offer, f"/offers/{offer}")
            elif roll < 0.85:
                pid = rng.choice(PRODUCTS)[0]
                await self.visit(sid, "product", pid, f"/p/{pid}")
            elif roll < 0.93:
                # A page type the shop added on its own: counted as sent.
                await self.visit(sid, "product_listing", None, "/products")
            else:
                await self.visit(sid, "search", None, "/search?q=gift")
            await self.pause(rng.uniform(3, 20))
        if rng.random() < self.config.checkout_rate:
            await self.checkout(sid)

    async def checkout(self, sid: str) -> None:
        """Check out a basket, pay, fail and retry as real customers do."""
        rng = self.rng
        picked = rng.sample(PRODUCTS, rng.randint(1, 3))
        basket = [(product, rng.randint(1, 2)) for product in picked]
        items = [
            {"id": pid, "name": name, "price": float(price), "quantity": quantity}
            for (pid, name, price), quantity in basket
        ]
        total = sum((price * quantity for (_p, _n, price), quantity in basket), Decimal("0"))
        method = rng.choice(PAYMENT_METHODS)
        await self.visit(sid, "checkout", None, "/checkout")
        started = await self.post(
            "/track/checkout-start",
            {"sessionId": sid, "checkoutItems": items, "totalAmount": float(total),
             "paymentMethod": method},
        )
        if started is None:
            return
        self.stats.checkouts += 1
        await self.pause(rng.uniform(5, 20))
        await self.visit(sid, "payment", None, "/checkout/payment")
        for attempt in range(1, 4):
            await self.post("/track/payment-start", {"sessionId": sid, "paymentMethod": method})
            await self.pause(rng.uniform(1, 4))
            if rng.random() >= self.config.error_rate:
                if await self.post("/track/payment-success", {"sessionId": sid}) is not None:
                    self.stats.payments += 1
                await self.visit(sid, "other", None, "/checkout/thank-you")
                await self.pause(rng.uniform(2, 6))
                return
            await self.fail_payment(sid, total, method, len(items))
            # Some give up at once; others fix the card details and try again.
            if attempt == 3 or rng.random() < 0.35:
                self.stats.abandoned += 1
                return
            await self.pause(rng.uniform(5, 15))
            await self.visit(sid, "payment", None, "/checkout/payment")
        self.stats.abandoned += 1

    async def fail_payment(self, sid: str, total: Decimal, method: str, item_count: int) -> None:
        """Report a decline in the client's nested ``errorDetails`` form (which also
        names the checkout's amount, method and item count)."""
        code, message, _weight = self.rng.choices(DECLINES, weights=[d[2] for d in DECLINES])[0]
        body = {
            "sessionId": sid,
            "errorDetails": {
                "errorCode": code,
                "errorMessage": message,
                "errorDetails": {
                    "type": "card_error",
                    "code": code,
                    "declineCode": code,
                    "paymentIntent": f"pi_{uuid.UUID(int=self.rng.getrandbits(128)).hex[:24]}",
                    "totalAmount": float(total),
                    "paymentMethod": method,
                    "itemCount": item_count,
                },
                "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds")
                .replace("+00:00", "Z"),
                "userAgent": self.user_agent,
                "url": f"{SHOP}/checkout/payment",
            },
        }
        if await self.post("/track/payment-error", body) is not None:
            self.stats.payment_errors += 1
            self.stats.error_codes[code] += 1
        await self.visit(sid, "payment_error", None, "/checkout/payment/error")


async def simulate(
    config: SimulationConfig,
    *,
    stats: SimulationStats | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SimulationStats:
    """Run the shoppers until ``duration`` passes or ``should_stop()`` says so."""
    if not 1 <= config.shoppers <= MAX_SHOPPERS:
        raise ValueError(f"shoppers must be between 1 and {MAX_SHOPPERS}")
    if not 0 < config.duration <= MAX_DURATION:
        raise ValueError("duration must be longer than zero and at most 24h")
    if not 0 <= config.error_rate <= 1:
        raise ValueError("error rate must be between 0 and 1")
    if config.speed <= 0:
        raise ValueError("speed must be greater than zero")
    base = check_loopback(config.url)
    # Imported here: every CLI command imports this module for its constants.
    import httpx

    stats = stats or SimulationStats()
    stop = should_stop or (lambda: False)
    master = random.Random(config.seed)
    deadline = time.monotonic() + config.duration
    limits = httpx.Limits(max_connections=min(config.shoppers, 100))
    async with httpx.AsyncClient(base_url=base, timeout=10.0, limits=limits) as client:
        shoppers = [
            _Shopper(client, config, stats, random.Random(master.getrandbits(64)), deadline,
                     stop, n)
            for n in range(config.shoppers)
        ]
        await asyncio.gather(*(s.run() for s in shoppers))
    stats.finished = time.monotonic()
    return stats
