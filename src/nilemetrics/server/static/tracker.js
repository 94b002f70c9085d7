/* nilemetrics tracker (source; the server sends tracker.min.js, built by tracker-build.sh).
   <script defer src="https://METRICS/tracker.js" data-api="https://METRICS"></script>
   One session per tab (sessionStorage), page visits on load and History API navigation,
   heartbeats while visible, the session ended by sendBeacon when the tab goes away.
   Events wait in a bounded queue (kept in sessionStorage) until the server has them;
   each carries an eventId, so a retry never counts twice. Nothing here may throw. */
((w, d) => {
  "use strict";
  const early = w.nilemetrics;
  if (early && early.version) return;
  const nav = navigator, loc = location, script = d.currentScript;
  const attr = (el, name) => el && el.getAttribute(name);
  const api = (attr(script, "data-api") || (script && script.src ? new URL(script.src).origin : ""))
    .replace(/\/+$/, "") + "/api/metrics/events";
  const MAX = 100, BATCH = 25, HIDDEN_END = 3e5, now = Date.now;

  const load = (key, local) => {
    try { return JSON.parse((local ? localStorage : sessionStorage).getItem("nm:" + key)); }
    catch (e) { return null; }
  };
  const save = (key, value) => {
    try { sessionStorage.setItem("nm:" + key, JSON.stringify(value)); } catch (e) { /* full or off */ }
  };
  // A random (version 4) UUID; crypto.randomUUID is missing on plain-http pages.
  const uuid = () => "10000000-1000-4000-8000-100000000000".replace(/[018]/g, (c) =>
    (c ^ crypto.getRandomValues(new Uint8Array(1))[0] & 15 >> c / 4).toString(16));
  // Global Privacy Control, Do-Not-Track or optOut(): counted, but nothing personal is sent.
  const anonymous = () => nav.globalPrivacyControl === true || nav.doNotTrack == "1" ||
    w.doNotTrack == "1" || load("optout", 1) === 1;
  const target = () => api + (anonymous() ? "?privacy=1" : "");
  const pageUrl = () => (anonymous() ? loc.origin + loc.pathname : loc.href).slice(0, 2048);
  const here = () => loc.pathname + loc.search;

  let sid = load("sid"), queue = load("q") || [], ended = load("end");
  // A page that follows an ended one (a reload, a link the tracker missed) waits a moment,
  // so that its visit reaches the server after the old page's end beacon.
  const hold = ended + 1e3;
  let busy = 0, delay = 0, single = 0, timer, autoTimer, hiddenAt = 0, internal = 0, lastPage;

  const persist = () => save("q", queue);
  const send = (type, fields, urgent) => {
    const last = queue[queue.length - 1];
    if (type == "session-heartbeat" && last && last.type == type) return;
    const event = { type, sessionId: sid, eventId: uuid() };
    for (const k in fields) if (fields[k] != null) event[k] = fields[k];
    queue.push(event);
    if (queue.length > MAX) queue.splice(0, queue.length - MAX);
    ended = type == "session-end" && now();
    save("end", ended);
    persist();
    urgent ? beacon() : flush();
  };
  const flush = () => {
    if (busy || !queue.length) return;
    clearTimeout(timer);
    if (now() < hold) return timer = setTimeout(flush, hold - now());
    busy = 1;
    const batch = queue.slice(0, single ? 1 : BATCH), body = JSON.stringify({ events: batch });
    // A string body goes as text/plain: a simple CORS request, no preflight round trip,
    // and no cookies (the default credentials mode sends none to another origin).
    // keepalive (the request outlives the page) refuses bodies over 64 KB.
    fetch(target(), { method: "POST", body, keepalive: body.length < 6e4 }).then((r) => {
      const s = r.status;
      if (!r.ok && (s < 400 || s > 499 || s == 408 || s == 429)) throw s;
      if (r.ok || batch.length == 1) {
        queue = queue.filter((e) => !batch.includes(e));
        persist();
      }
      // A 4xx will not get better: send one at a time until the bad event is dropped.
      if (!r.ok) single = batch.length > 1;
      delay = 0;
    }).catch(() => {
      delay = Math.min(delay * 2 || 1e3, 3e4);
    }).then(() => {
      busy = 0;
      if (queue.length) timer = setTimeout(flush, delay);
    });
  };
  // sendBeacon survives the page but says nothing of delivery: the queue keeps its events
  // until a fetch is answered, and the server drops the repeats by eventId.
  const beacon = () => {
    try { queue.length && nav.sendBeacon(target(), JSON.stringify({ events: queue })); }
    catch (e) { /* the next page or the next flush sends them */ }
  };

  const visit = (o) => {
    clearTimeout(autoTimer);
    lastPage = here();
    send("page-visit", { pageType: o.pageType, pageIdentifier: o.pageIdentifier, pageUrl: o.pageUrl || pageUrl() });
  };
  const page = (pageType) => (pageIdentifier) => visit({ pageType, pageIdentifier });
  // The automatic visit waits a tick, so that a page tracked by hand is not counted twice.
  const auto = (again) => {
    if (attr(script, "data-auto") == "false") return;
    clearTimeout(autoTimer);
    autoTimer = setTimeout(() => {
      if (!again && lastPage == here()) return;
      const b = d.body;
      visit({
        pageType: attr(b, "data-page-type") || attr(script, "data-page-type") || (loc.pathname == "/" ? "homepage" : "other"),
        pageIdentifier: attr(b, "data-page-id") || attr(script, "data-page-id")
      });
    });
  };
  const end = () => ended || send("session-end", {}, 1);
  const onNavigate = () => here() != lastPage && auto();
  const comeBack = () => {
    hiddenAt = 0;
    ended ? auto(1) : send("session-heartbeat", {});
  };

  const methods = {
    trackPageVisit: visit,
    trackHomePage: page("homepage"),
    trackCategoryPage: page("category"),
    trackOfferPage: page("offer"),
    trackCheckoutPage: page("checkout"),
    trackPaymentPage: page("payment"),
    trackPaymentErrorPage: page("payment_error"),
    trackCheckoutStart: (o) => send("checkout-start",
      { checkoutItems: o.checkoutItems, totalAmount: o.totalAmount, paymentMethod: o.paymentMethod }),
    trackPaymentStart: (o) => send("payment-start", { paymentMethod: o && o.paymentMethod }),
    trackPaymentError: (o) => send("payment-error", { errorDetails: {
      errorCode: o.errorCode, errorMessage: o.errorMessage, errorDetails: o.errorDetails,
      timestamp: new Date().toISOString(), userAgent: anonymous() ? null : nav.userAgent, url: pageUrl()
    } }),
    trackPaymentSuccess: () => send("payment-success", {}),
    endSession: end,
    identify: (o) => anonymous() || send("session-start", { userId: o.userId, email: o.email, phone: o.phone }),
    optOut: () => localStorage.setItem("nm:optout", "1"),
    optIn: () => localStorage.removeItem("nm:optout"),
    sessionId: () => sid
  };
  const pub = { version: "1.0.0" };
  // Every public method swallows its own errors: tracking must never break the shop.
  for (const k in methods) pub[k] = (...a) => { try { return methods[k](...a); } catch (e) { /* ignored */ } };
  w.nilemetrics = pub;

  try {
    if (!sid) { sid = uuid(); save("sid", sid); send("session-start", {}); }
    else flush();
    for (const k of ["pushState", "replaceState"]) {
      const orig = history[k];
      history[k] = function () { const r = orig.apply(this, arguments); onNavigate(); return r; };
    }
    w.addEventListener("popstate", onNavigate);
    // Leaving for another page of the shop is not the end of the session; closing the tab is.
    const mark = () => { internal = now(); };
    if (w.navigation) navigation.addEventListener("navigate", (e) => new URL(e.destination.url).origin == loc.origin && mark());
    d.addEventListener("click", (e) => {
      const a = e.target.closest && e.target.closest("a[href]");
      if (a && a.origin == loc.origin) mark();
    }, true);
    d.addEventListener("submit", mark, true);
    w.addEventListener("pagehide", () => now() - internal < 1e4 ? beacon() : end());
    // Back to a page from the back/forward cache: the shopper is on this page again.
    w.addEventListener("pageshow", (e) => e.persisted && auto(1));
    d.addEventListener("visibilitychange", () => {
      if (d.hidden) { hiddenAt = now(); beacon(); }
      else if (hiddenAt) comeBack();
    });
    setInterval(() => {
      if (!d.hidden) ended || send("session-heartbeat", {});
      else if (hiddenAt && now() - hiddenAt > HIDDEN_END) end();
    }, 3e4);
    // Calls queued before the script loaded: window.nilemetrics = [["trackOfferPage", "x"], …]
    if (Array.isArray(early)) for (const [k, ...a] of early) pub[k] && pub[k](...a);
    d.readyState == "loading" ? d.addEventListener("DOMContentLoaded", () => auto()) : auto();
  } catch (e) { /* a broken tracker is a silent tracker */ }
})(window, document);
