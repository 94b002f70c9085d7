"""A small demo shop that uses ``/tracker.js``: ``nilemetrics demo`` serves it.

Home, categories, offers, a cart, a checkout and a payment form whose outcome can
be chosen (approve, or one of the card decline codes providers report). Pages are
server-rendered; the cart lives in the browser's ``localStorage``. The shop runs on
its own origin, as a real shop does, and talks to the metrics server cross-origin.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from html import escape

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from nilemetrics.demo.shoppers import DECLINES


@dataclass(frozen=True)
class Product:
    """One thing the demo shop sells."""

    sku: str
    name: str
    price: Decimal
    category: str


PRODUCTS = (
    Product("p-1001", "Wireless Headphones", Decimal("89.99"), "electronics"),
    Product("p-1009", "USB-C Charger", Decimal("29.00"), "electronics"),
    Product("p-1002", "Running Shoes", Decimal("74.50"), "sports"),
    Product("p-1005", "Yoga Mat", Decimal("19.95"), "sports"),
    Product("p-1003", "Coffee Grinder", Decimal("39.90"), "home-garden"),
    Product("p-1004", "Desk Lamp", Decimal("24.99"), "home-garden"),
    Product("p-1007", "Rain Jacket", Decimal("119.00"), "fashion"),
    Product("p-1008", "Paperback Novel", Decimal("12.49"), "books"),
    Product("p-1006", "Board Game", Decimal("34.00"), "toys"),
)
CATEGORIES = {
    "electronics": "Electronics",
    "fashion": "Fashion",
    "home-garden": "Home & Garden",
    "books": "Books",
    "toys": "Toys",
    "sports": "Sports",
}
#: Offer id → (title, SKUs on offer, discount in percent).
OFFERS = {
    "black-friday": ("Black Friday", ("p-1001", "p-1007", "p-1003"), 30),
    "bundle-deal": ("Bundle deal", ("p-1005", "p-1002"), 15),
}

_STYLE = """
body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#1d2433;background:#f6f7f9}
header{background:#1d2433;color:#fff;padding:.8rem 1.5rem;display:flex;gap:1.2rem;
 flex-wrap:wrap;align-items:center}
header a{color:#fff;text-decoration:none}header .brand{font-weight:700;margin-right:auto}
main{max-width:60rem;margin:1.5rem auto;padding:0 1.5rem}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(14rem,1fr));gap:1rem}
.card{background:#fff;border-radius:.5rem;padding:1rem;box-shadow:0 1px 3px #0002}
button,.button{background:#2563eb;color:#fff;border:0;border-radius:.4rem;padding:.5rem 1rem;
 font:inherit;cursor:pointer;text-decoration:none;display:inline-block}
.muted{color:#667}.error{color:#b91c1c;font-weight:600}.ok{color:#15803d;font-weight:600}
label{display:block;margin:.6rem 0}input,select{font:inherit;padding:.3rem;width:100%;
 max-width:22rem;box-sizing:border-box}
table{border-collapse:collapse;width:100%}td,th{padding:.4rem;border-bottom:1px solid #ddd;
 text-align:left}
footer{text-align:center;color:#667;margin:3rem 0 1rem;font-size:.85rem}
"""

# The shop's own code: cart in localStorage, checkout and payment calls to the tracker.
_SHOP_JS = """
"use strict";
// Without the tracker (blocked, or its server unreachable) the shop still works.
const nm = window.nilemetrics || new Proxy({}, {get: () => () => undefined});
const cart = () => JSON.parse(localStorage.getItem("demo-cart") || "[]");
const keep = (items) => localStorage.setItem("demo-cart", JSON.stringify(items));
const total = (items) => items.reduce((s, i) => s + i.price * i.quantity, 0);
const money = (n) => "€" + n.toFixed(2);
const count = document.getElementById("cart-count");
if (count) count.textContent = cart().reduce((s, i) => s + i.quantity, 0);

document.querySelectorAll("[data-add]").forEach((b) => b.addEventListener("click", () => {
  const items = cart(), sku = b.dataset.add;
  const found = items.find((i) => i.sku === sku);
  if (found) found.quantity += 1;
  else items.push({sku, name: b.dataset.name, price: Number(b.dataset.price), quantity: 1});
  keep(items);
  location.href = "/cart";
}));

const lines = document.getElementById("cart-lines");
if (lines) {
  const items = cart();
  lines.innerHTML = items.length ? items.map((i) =>
    `<tr><td>${i.name}</td><td>${i.quantity}</td><td>${money(i.price * i.quantity)}</td></tr>`
  ).join("") + `<tr><th>Total</th><td></td><th id="cart-total">${money(total(items))}</th></tr>`
    : "<tr><td>Your cart is empty.</td></tr>";
  const go = document.getElementById("to-checkout");
  if (go && !items.length) go.hidden = true;
}

const toPayment = document.getElementById("checkout-form");
if (toPayment) toPayment.addEventListener("submit", (e) => {
  e.preventDefault();
  const items = cart(), email = document.getElementById("email").value.trim();
  const method = document.getElementById("method").value;
  if (email) nm.identify({email});
  nm.trackCheckoutStart({
    checkoutItems: items.map((i) => ({productId: i.sku, name: i.name, quantity: i.quantity,
                                      price: i.price})),
    totalAmount: Math.round(total(items) * 100) / 100,
    paymentMethod: method,
  });
  localStorage.setItem("demo-method", method);
  location.href = "/payment";
});

const toPay = document.getElementById("pay-total");
if (toPay) toPay.textContent = money(total(cart()));

const payForm = document.getElementById("payment-form");
if (payForm) payForm.addEventListener("submit", (e) => {
  e.preventDefault();
  const outcome = document.getElementById("outcome");
  const status = document.getElementById("status");
  document.getElementById("pay").disabled = true;
  status.textContent = "Processing…";
  nm.trackPaymentStart({paymentMethod: localStorage.getItem("demo-method") || "card"});
  setTimeout(() => {
    if (outcome.value === "approve") {
      nm.trackPaymentSuccess();
      keep([]);
      location.href = "/thank-you";
      return;
    }
    const message = outcome.selectedOptions[0].dataset.message;
    nm.trackPaymentError({
      errorCode: outcome.value, errorMessage: message,
      errorDetails: {type: "card_error", declineCode: outcome.value,
                     amount: total(cart()).toFixed(2)},
    });
    location.href = "/payment/failed?code=" + encodeURIComponent(outcome.value);
  }, 400);
});
"""


def create_shop_app(api_url: str) -> Starlette:
    """The demo shop, tracking to the metrics server at ``api_url``."""
    api = api_url.rstrip("/")

    def page(title: str, page_type: str, body: str, page_id: str | None = None) -> HTMLResponse:
        ident = f' data-page-id="{escape(page_id)}"' if page_id else ""
        nav = "".join(
            f'<a href="/category/{cid}">{escape(name)}</a>' for cid, name in CATEGORIES.items()
        )
        return HTMLResponse(
            f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{escape(title)} · Nile demo shop</title><style>{_STYLE}</style>
<script defer src="{escape(api)}/tracker.js" data-api="{escape(api)}"></script>
<script defer src="/shop.js"></script></head>
<body data-page-type="{page_type}"{ident}>
<header><a class="brand" href="/">Nile demo shop</a>{nav}
<a href="/cart">Cart (<span id="cart-count">0</span>)</a></header>
<main><h1>{escape(title)}</h1>{body}</main>
<footer>A demo shop: nothing is sold. Every click is tracked by nilemetrics
(run <code>nilemetrics watch</code> to see it live).</footer></body></html>"""
        )

    def products(items: tuple[Product, ...], discount: int = 0) -> str:
        cards = []
        for p in items:
            price = (p.price * (100 - discount) / 100).quantize(Decimal("0.01"))
            was = f' <s class="muted">€{p.price}</s>' if discount else ""
            cards.append(
                f'<div class="card"><h3>{escape(p.name)}</h3><p>€{price}{was}</p>'
                f'<button data-add="{p.sku}" data-name="{escape(p.name)}" '
                f'data-price="{price}">Add to cart</button></div>'
            )
        return f'<div class="grid">{"".join(cards)}</div>'

    def not_found(what: str) -> HTMLResponse:
        response = page("Not found", "other", f'<p>No such {what}. <a href="/">Home</a></p>')
        response.status_code = 404
        return response

    async def home(request: Request) -> Response:
        offers = "".join(
            f'<div class="card"><h3>{escape(title)}</h3><p>{pct}% off</p>'
            f'<a class="button" href="/offer/{oid}">See the offer</a></div>'
            for oid, (title, _skus, pct) in OFFERS.items()
        )
        cats = "".join(
            f'<div class="card"><a href="/category/{cid}">{escape(name)}</a></div>'
            for cid, name in CATEGORIES.items()
        )
        return page(
            "Welcome", "homepage",
            f'<h2>Offers</h2><div class="grid">{offers}</div><h2>Categories</h2>'
            f'<div class="grid">{cats}</div>',
        )

    async def category(request: Request) -> Response:
        cid = request.path_params["category"]
        if cid not in CATEGORIES:
            return not_found("category")
        items = tuple(p for p in PRODUCTS if p.category == cid)
        return page(CATEGORIES[cid], "category", products(items), page_id=cid)

    async def offer(request: Request) -> Response:
        oid = request.path_params["offer"]
        if oid not in OFFERS:
            return not_found("offer")
        title, skus, pct = OFFERS[oid]
        items = tuple(p for p in PRODUCTS if p.sku in skus)
        return page(f"{title}: {pct}% off", "offer", products(items, pct), page_id=oid)

    async def cart(request: Request) -> Response:
        return page(
            "Your cart", "other",
            '<table id="cart-lines"></table><p>'
            '<a class="button" id="to-checkout" href="/checkout">Checkout</a></p>',
        )

    async def checkout(request: Request) -> Response:
        methods = "".join(
            f'<option value="{m}">{label}</option>'
            for m, label in (("card", "Card"), ("paypal", "PayPal"), ("apple_pay", "Apple Pay"))
        )
        return page(
            "Checkout", "checkout",
            '<form id="checkout-form" class="card">'
            '<label>Email (optional: as a logged-in customer)'
            '<input id="email" type="email" autocomplete="email"></label>'
            f'<label>Payment method <select id="method">{methods}</select></label>'
            '<button id="to-payment">Continue to payment</button></form>',
        )

    async def payment(request: Request) -> Response:
        outcomes = '<option value="approve" data-message="">Approve the payment</option>' + "".join(
            f'<option value="{code}" data-message="{escape(message)}">Decline: {code}</option>'
            for code, message, _weight in DECLINES
        )
        return page(
            "Payment", "payment",
            '<form id="payment-form" class="card">'
            '<p>To pay: <strong id="pay-total"></strong></p>'
            '<label>Card number <input value="4242 4242 4242 4242" readonly></label>'
            '<label>Outcome (this is a demo: choose what the bank answers)'
            f'<select id="outcome">{outcomes}</select></label>'
            '<button id="pay">Pay now</button> <span id="status" class="muted"></span></form>',
        )

    async def payment_failed(request: Request) -> Response:
        code = request.query_params.get("code", "card_declined")
        message = {c: m for c, m, _w in DECLINES}.get(code, "The payment failed.")
        return page(
            "Payment failed", "payment_error",
            f'<p class="error" id="decline">{escape(message)} ({escape(code[:64])})</p>'
            '<p><a class="button" id="retry" href="/payment">Try again</a></p>',
        )

    async def thank_you(request: Request) -> Response:
        return page("Thank you!", "other", '<p class="ok" id="paid">Your order is paid.</p>'
                    '<p><a href="/">Back to the shop</a></p>')

    async def shop_js(request: Request) -> Response:
        return Response(_SHOP_JS, media_type="text/javascript; charset=utf-8")

    return Starlette(
        routes=[
            Route("/", home),
            Route("/category/{category}", category),
            Route("/offer/{offer}", offer),
            Route("/cart", cart),
            Route("/checkout", checkout),
            Route("/payment", payment),
            Route("/payment/failed", payment_failed),
            Route("/thank-you", thank_you),
            Route("/shop.js", shop_js),
        ]
    )
