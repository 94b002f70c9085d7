/* nilemetrics browser tracker: the readable source.

   The server sends tracker.min.js, which `bash scripts/build-tracker.sh` builds from this
   file (terser). Run it after every edit: a test fails while the build is older than this
   source. Write for the reader here; shortening is the minifier's job.

   A shop adds one line to every page:
     <script defer src="https://METRICS/tracker.js" data-api="https://METRICS"></script>

   One session per tab (sessionStorage), page visits on load and History API navigation,
   heartbeats while visible, the session ended by sendBeacon when the tab goes away.
   Events wait in a bounded queue (kept in sessionStorage) until the server has them;
   each carries an eventId, so a retry never counts twice. Nothing here may throw. */

(() => {
  "use strict";

  // Every event type the tracker sends, and nowhere else in this file. Each must be a type
  // that POST /api/metrics/events accepts: tests/api/test_tracker_support.py checks them.
  const EVENT_TYPES = {
    sessionStart: "session-start",
    sessionHeartbeat: "session-heartbeat",
    pageVisit: "page-visit",
    checkoutStart: "checkout-start",
    paymentStart: "payment-start",
    paymentError: "payment-error",
    paymentSuccess: "payment-success",
    sessionEnd: "session-end",
    event: "event",
  };

  const VERSION = "1.0.0";
  const EVENTS_PATH = "/api/metrics/events";
  // The queue lives in sessionStorage, which is small: past this, the oldest events go.
  const MAX_QUEUED_EVENTS = 100;
  const BATCH_SIZE = 25;
  const HEARTBEAT_INTERVAL_MS = 30 * 1000;
  // A tab hidden this long counts as left: its session ends.
  const HIDDEN_END_MS = 5 * 60 * 1000;
  const FIRST_RETRY_MS = 1000;
  const MAX_RETRY_MS = 30 * 1000;
  // How long a page that follows an ended one holds its events back (see holdUntil).
  const END_BEACON_LEAD_MS = 1000;
  // A pagehide this soon after the shopper headed elsewhere in the shop (a link, a form)
  // is a move to another page, not the tab closing.
  const INTERNAL_NAVIGATION_MS = 10 * 1000;
  // Browsers refuse keepalive requests with bodies over 64 KB; stay well under.
  const MAX_KEEPALIVE_BODY_LENGTH = 60000;
  // The server refuses longer page URLs.
  const MAX_PAGE_URL_LENGTH = 2048;
  // Storage keys are "nm:" + one of these. They must not change: a tab keeps its session
  // and its queue across a tracker upgrade only if the new script reads what the old wrote.
  const STORAGE_PREFIX = "nm:";
  const STORAGE_KEYS = {
    sessionId: "sid",
    queue: "q",
    endedAt: "end",
    optOut: "optout",
    visitor: "vid",
    // + the experiment's name: its variant (localStorage), and that it was sent (this tab).
    experiment: "x:",
    experimentSent: "xs:",
  };
  // Custom event names the server gives a meaning (protocol/names.py).
  const EXPERIMENT_EVENT = "experiment";
  const CLICK_EVENT = "click";
  // Clicks are reported as a cell of a CLICK_GRID x CLICK_GRID grid over the viewport.
  const CLICK_GRID = 10;
  // A click's element path: at most this many elements, and the server's longest text.
  const MAX_PATH_ELEMENTS = 5;
  const MAX_PROPERTY_TEXT = 255;

  // Before the script loads, a page may queue calls here (an array); a second copy of the
  // script finds the first one's tracker and leaves it in charge.
  const existing = window.nilemetrics;
  if (existing && existing.version) return;

  const script = document.currentScript;
  const attributeOf = (element, name) => element && element.getAttribute(name);
  // Without data-api the events go back to wherever the script came from.
  const apiOrigin =
    attributeOf(script, "data-api") || (script && script.src ? new URL(script.src).origin : "");
  const eventsUrl = apiOrigin.replace(/\/+$/, "") + EVENTS_PATH;
  const now = Date.now;

  /** The JSON value stored under key, or null when it is missing, unreadable or storage is off. */
  const loadStored = (key, fromLocalStorage) => {
    try {
      // Inside the try: merely reading window.sessionStorage throws where storage is blocked.
      return JSON.parse(
        (fromLocalStorage ? localStorage : sessionStorage).getItem(STORAGE_PREFIX + key),
      );
    } catch (error) {
      return null;
    }
  };

  /** Keep a value for the rest of this tab's life (sessionStorage). */
  const storeInTab = (key, value) => {
    try {
      sessionStorage.setItem(STORAGE_PREFIX + key, JSON.stringify(value));
    } catch (error) {
      // Storage full or off: the tracker carries on from memory for this page.
    }
  };

  // A random (version 4) UUID. Not crypto.randomUUID: browsers offer it only to https pages.
  const randomUuid = () =>
    "10000000-1000-4000-8000-100000000000".replace(/[018]/g, (digit) =>
      (digit ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (digit / 4)))).toString(16),
    );

  // Global Privacy Control, Do-Not-Track (window.doNotTrack in older browsers) or optOut():
  // the visitor is counted, but nothing personal is sent.
  const isAnonymous = () =>
    navigator.globalPrivacyControl === true ||
    navigator.doNotTrack == "1" ||
    window.doNotTrack == "1" ||
    loadStored(STORAGE_KEYS.optOut, true) === 1;

  // ?privacy=1 tells the server to store no IP or user agent: scripts cannot set Sec-GPC,
  // and beacons carry no headers at all.
  const requestUrl = () => eventsUrl + (isAnonymous() ? "?privacy=1" : "");

  // An anonymous visitor's page URL loses its query string, where personal data hides.
  const currentPageUrl = () =>
    (isAnonymous() ? location.origin + location.pathname : location.href).slice(
      0,
      MAX_PAGE_URL_LENGTH,
    );

  // What makes another page: a change of path or query, not of the #hash.
  const currentPath = () => location.pathname + location.search;

  let sessionId = loadStored(STORAGE_KEYS.sessionId);
  let queue = loadStored(STORAGE_KEYS.queue) || [];
  // When this tab's session ended (a timestamp), or false / null while it goes on.
  let endedAt = loadStored(STORAGE_KEYS.endedAt);
  // A page that follows an ended one (a reload, a link the tracker missed) waits a moment,
  // so that its visit reaches the server after the old page's end beacon. Without an end,
  // this is 1000 (null + 1000): long past, no wait.
  const holdUntil = endedAt + END_BEACON_LEAD_MS;

  let sending = false;
  let retryDelayMs = 0;
  // After a 4xx: events go one per request until the one the server refuses is dropped.
  let oneAtATime = false;
  let flushTimer;
  let autoVisitTimer;
  let hiddenAt = 0;
  let internalNavigationAt = 0;
  let lastTrackedPath;
  let lastPageType;

  const saveQueue = () => storeInTab(STORAGE_KEYS.queue, queue);

  /** Keep a value across tabs and visits (localStorage); false where that is blocked. */
  const storeForVisitor = (key, value) => {
    try {
      localStorage.setItem(STORAGE_PREFIX + key, JSON.stringify(value));
      return true;
    } catch (error) {
      return false;
    }
  };

  // Who experiments stick to: a random id kept in localStorage, or this tab's session
  // when that is blocked or the visitor is anonymous (nothing kept beyond the tab).
  const visitorId = () => {
    if (isAnonymous()) return sessionId;
    let id = loadStored(STORAGE_KEYS.visitor, true);
    if (!id) {
      id = randomUuid();
      if (!storeForVisitor(STORAGE_KEYS.visitor, id)) return sessionId;
    }
    return id;
  };

  /** What a click reports of its element: tag, id and first class, up to an id; no text. */
  const elementPath = (element) => {
    const parts = [];
    for (
      let node = element;
      node && node.tagName && node != document.body && parts.length < MAX_PATH_ELEMENTS;
      node = node.parentElement
    ) {
      let part = node.tagName.toLowerCase();
      if (node.id) {
        parts.unshift(part + "#" + node.id);
        break;
      }
      if (node.classList[0]) part += "." + node.classList[0];
      parts.unshift(part);
    }
    return (parts.join(">") || "body").slice(0, MAX_PROPERTY_TEXT);
  };

  // A position as its cell on the grid over the viewport, 0 to CLICK_GRID - 1.
  const gridCell = (position, size) =>
    Math.max(0, Math.min(CLICK_GRID - 1, Math.floor((position / size) * CLICK_GRID) || 0));

  /** Queue one event and send it: at once by beacon when urgent (the page is going away). */
  const queueEvent = (type, fields, urgent) => {
    const lastQueued = queue[queue.length - 1];
    // Heartbeats waiting together say no more than one does.
    if (type == EVENT_TYPES.sessionHeartbeat && lastQueued && lastQueued.type == type) return;
    const event = { type, sessionId, eventId: randomUuid() };
    for (const name in fields) {
      // What the caller did not give is left out, not sent as null.
      if (fields[name] != null) event[name] = fields[name];
    }
    queue.push(event);
    if (queue.length > MAX_QUEUED_EVENTS) queue.splice(0, queue.length - MAX_QUEUED_EVENTS);
    endedAt = type == EVENT_TYPES.sessionEnd && now();
    storeInTab(STORAGE_KEYS.endedAt, endedAt);
    saveQueue();
    if (urgent) sendQueueByBeacon();
    else flush();
  };

  /** Send the oldest queued events, one request at a time, until the queue is empty. */
  const flush = () => {
    if (sending || !queue.length) return;
    clearTimeout(flushTimer);
    if (now() < holdUntil) {
      flushTimer = setTimeout(flush, holdUntil - now());
      return;
    }
    sending = true;
    const batch = queue.slice(0, oneAtATime ? 1 : BATCH_SIZE);
    const body = JSON.stringify({ events: batch });
    // A string body goes as text/plain: a simple CORS request, no preflight round trip,
    // and no cookies (the default credentials mode sends none to another origin).
    // keepalive lets the request outlive the page.
    fetch(requestUrl(), {
      method: "POST",
      body,
      keepalive: body.length < MAX_KEEPALIVE_BODY_LENGTH,
    })
      .then((response) => {
        const status = response.status;
        // A server error, a timeout or "too many requests" may pass: try again later.
        if (!response.ok && (status < 400 || status > 499 || status == 408 || status == 429)) {
          throw status;
        }
        // Stored, or a single event refused for good: either way it leaves the queue.
        if (response.ok || batch.length == 1) {
          queue = queue.filter((queued) => !batch.includes(queued));
          saveQueue();
        }
        // A 4xx will not get better: send one at a time until the bad event is dropped
        // (that refusal, for a batch of one, switches back to batches).
        if (!response.ok) oneAtATime = batch.length > 1;
        retryDelayMs = 0;
      })
      .catch(() => {
        retryDelayMs = Math.min(retryDelayMs * 2 || FIRST_RETRY_MS, MAX_RETRY_MS);
      })
      .then(() => {
        sending = false;
        if (queue.length) flushTimer = setTimeout(flush, retryDelayMs);
      });
  };

  // sendBeacon survives the page but says nothing of delivery: the queue keeps its events
  // until a fetch is answered, and the server drops the repeats by eventId.
  const sendQueueByBeacon = () => {
    try {
      if (queue.length) navigator.sendBeacon(requestUrl(), JSON.stringify({ events: queue }));
    } catch (error) {
      // The next page, or the next flush, sends them.
    }
  };

  const trackVisit = (page) => {
    clearTimeout(autoVisitTimer);
    lastTrackedPath = currentPath();
    lastPageType = page.pageType;
    queueEvent(EVENT_TYPES.pageVisit, {
      pageType: page.pageType,
      pageIdentifier: page.pageIdentifier,
      pageUrl: page.pageUrl || currentPageUrl(),
    });
  };

  const visitTrackerFor = (pageType) => (pageIdentifier) =>
    trackVisit({ pageType, pageIdentifier });

  // The automatic visit waits a tick, so that a page tracked by hand is not counted twice.
  // `again` counts it even on the path last tracked: a page shown again from the
  // back/forward cache, or a tab come back after its session ended.
  const trackVisitAutomatically = (again) => {
    if (attributeOf(script, "data-auto") == "false") return;
    clearTimeout(autoVisitTimer);
    autoVisitTimer = setTimeout(() => {
      if (!again && lastTrackedPath == currentPath()) return;
      const body = document.body;
      trackVisit({
        pageType:
          attributeOf(body, "data-page-type") ||
          attributeOf(script, "data-page-type") ||
          (location.pathname == "/" ? "homepage" : "other"),
        pageIdentifier: attributeOf(body, "data-page-id") || attributeOf(script, "data-page-id"),
      });
    });
  };

  const endSession = () => {
    if (!endedAt) queueEvent(EVENT_TYPES.sessionEnd, {}, true);
  };

  const onNavigate = () => {
    if (currentPath() != lastTrackedPath) trackVisitAutomatically();
  };

  // The tab is visible again: the session goes on, or, if it ended meanwhile, this page
  // starts it again.
  const onVisibleAgain = () => {
    hiddenAt = 0;
    if (endedAt) trackVisitAutomatically(true);
    else queueEvent(EVENT_TYPES.sessionHeartbeat, {});
  };

  // The public API, window.nilemetrics.*; each method is wrapped below so that it never
  // throws. They return nothing, but for sessionId().
  const methods = {
    /**
     * Count a visit to this page.
     * @param {{pageType: string, pageIdentifier?: string, pageUrl?: string}} page
     *   pageUrl defaults to this page's URL.
     */
    trackPageVisit: trackVisit,
    /** Count a visit to the home page. */
    trackHomePage: visitTrackerFor("homepage"),
    /**
     * Count a visit to a category page.
     * @param {string} [categoryId]
     */
    trackCategoryPage: visitTrackerFor("category"),
    /**
     * Count a visit to an offer page.
     * @param {string} [offerId]
     */
    trackOfferPage: visitTrackerFor("offer"),
    /** Count a visit to the checkout page. */
    trackCheckoutPage: visitTrackerFor("checkout"),
    /** Count a visit to the payment page. */
    trackPaymentPage: visitTrackerFor("payment"),
    /** Count a visit to the payment error page. */
    trackPaymentErrorPage: visitTrackerFor("payment_error"),
    /**
     * The shopper starts checking out.
     * @param {{checkoutItems: Array<object>, totalAmount: number, paymentMethod?: string}} checkout
     */
    trackCheckoutStart: (checkout) =>
      queueEvent(EVENT_TYPES.checkoutStart, {
        checkoutItems: checkout.checkoutItems,
        totalAmount: checkout.totalAmount,
        paymentMethod: checkout.paymentMethod,
      }),
    /**
     * The shopper starts paying.
     * @param {{paymentMethod?: string}} [payment]
     */
    trackPaymentStart: (payment) =>
      queueEvent(EVENT_TYPES.paymentStart, { paymentMethod: payment && payment.paymentMethod }),
    /**
     * A payment failed. The details also get the time, this page's URL and (unless the
     * visitor is anonymous) the user agent.
     * @param {{errorCode?: string, errorMessage?: string, errorDetails?: *}} error
     */
    trackPaymentError: (error) =>
      queueEvent(EVENT_TYPES.paymentError, {
        errorDetails: {
          errorCode: error.errorCode,
          errorMessage: error.errorMessage,
          errorDetails: error.errorDetails,
          timestamp: new Date().toISOString(),
          userAgent: isAnonymous() ? null : navigator.userAgent,
          url: currentPageUrl(),
        },
      }),
    /** A payment went through. */
    trackPaymentSuccess: () => queueEvent(EVENT_TYPES.paymentSuccess, {}),
    /**
     * Count a custom event: a name (letters, digits, _ and -, up to 64) and up to 20
     * properties whose values are strings, numbers or booleans.
     * @param {string} name
     * @param {Object<string, string|number|boolean>} [properties]
     */
    track: (name, properties) => queueEvent(EVENT_TYPES.event, { name, properties }),
    /**
     * Put this visitor in a variant of an experiment: at random the first time, the same
     * one after that (localStorage; where it is blocked, or for an anonymous visitor, for
     * this tab's session). The assignment is sent once per session, as a custom event.
     * @param {string} name  the experiment (letters, digits, _ and -)
     * @param {string[]} variants  the first is the control
     * @returns {string} the variant
     */
    experiment: (name, variants) => {
      const key = STORAGE_KEYS.experiment + name;
      const anonymous = isAnonymous();
      let variant = (!anonymous && loadStored(key, true)) || loadStored(key);
      if (!variants.includes(variant)) {
        variant = variants[crypto.getRandomValues(new Uint32Array(1))[0] % variants.length];
        if (anonymous || !storeForVisitor(key, variant)) storeInTab(key, variant);
      }
      if (!loadStored(STORAGE_KEYS.experimentSent + name)) {
        storeInTab(STORAGE_KEYS.experimentSent + name, 1);
        queueEvent(EVENT_TYPES.event, {
          name: EXPERIMENT_EVENT,
          properties: { experiment: name, variant, visitor: visitorId() },
        });
      }
      return variant;
    },
    /** End this tab's session now (the tracker also does it when the tab closes). */
    endSession,
    /**
     * Name the customer behind this session (after a login). Sends nothing for an anonymous
     * visitor (GPC, Do-Not-Track or optOut()).
     * @param {{userId?: string|number, email?: string, phone?: string}} customer
     */
    identify: (customer) => {
      if (isAnonymous()) return;
      queueEvent(EVENT_TYPES.sessionStart, {
        userId: customer.userId,
        email: customer.email,
        phone: customer.phone,
      });
    },
    /** Count this browser without anything personal from now on, in every tab (localStorage). */
    optOut: () => localStorage.setItem(STORAGE_PREFIX + STORAGE_KEYS.optOut, "1"),
    /** Undo optOut(). */
    optIn: () => localStorage.removeItem(STORAGE_PREFIX + STORAGE_KEYS.optOut),
    /**
     * This tab's session id, made in the browser.
     * @returns {string}
     */
    sessionId: () => sessionId,
  };

  // `version` also tells a second copy of the script that a tracker is already running.
  const tracker = { version: VERSION };
  // Every public method swallows its own errors: tracking must never break the shop.
  for (const name in methods) {
    tracker[name] = (...args) => {
      try {
        return methods[name](...args);
      } catch (error) {
        // Ignored, as above.
      }
    };
  }
  window.nilemetrics = tracker;

  try {
    if (!sessionId) {
      sessionId = randomUuid();
      storeInTab(STORAGE_KEYS.sessionId, sessionId);
      queueEvent(EVENT_TYPES.sessionStart, {});
    } else {
      // Whatever an earlier page of this tab left unsent.
      flush();
    }

    // pushState and replaceState fire no event: wrapping them is how a single-page shop's
    // navigation is seen.
    for (const name of ["pushState", "replaceState"]) {
      const original = history[name];
      history[name] = function (...args) {
        const result = original.apply(this, args);
        onNavigate();
        return result;
      };
    }
    window.addEventListener("popstate", onNavigate);

    // Leaving for another page of the shop is not the end of the session; closing the tab
    // is. pagehide cannot tell them apart, so note when the shopper heads somewhere on
    // this origin: the Navigation API where there is one, links and forms everywhere.
    const markInternalNavigation = () => {
      internalNavigationAt = now();
    };
    if (window.navigation) {
      navigation.addEventListener("navigate", (event) => {
        if (new URL(event.destination.url).origin == location.origin) markInternalNavigation();
      });
    }
    document.addEventListener(
      "click",
      (event) => {
        const link = event.target.closest && event.target.closest("a[href]");
        if (link && link.origin == location.origin) markInternalNavigation();
      },
      true,
    );
    document.addEventListener("submit", markInternalNavigation, true);

    // data-clicks on the script tag: every click, as its element's path and its cell on a
    // coarse grid over the viewport (never the element's text), and the page's path.
    if (script && script.hasAttribute("data-clicks")) {
      document.addEventListener(
        "click",
        (event) =>
          tracker.track(CLICK_EVENT, {
            path: elementPath(event.target),
            x: gridCell(event.clientX, innerWidth),
            y: gridCell(event.clientY, innerHeight),
            page: location.pathname,
            pageType: lastPageType,
          }),
        true,
      );
    }
    window.addEventListener("pagehide", () => {
      if (now() - internalNavigationAt < INTERNAL_NAVIGATION_MS) sendQueueByBeacon();
      else endSession();
    });

    // Back to a page from the back/forward cache: the shopper is on this page again.
    window.addEventListener("pageshow", (event) => {
      if (event.persisted) trackVisitAutomatically(true);
    });

    document.addEventListener("visibilitychange", () => {
      if (document.hidden) {
        hiddenAt = now();
        // A hidden tab may be closed or frozen without another event: send what waits now.
        sendQueueByBeacon();
      } else if (hiddenAt) {
        onVisibleAgain();
      }
    });

    setInterval(() => {
      if (!document.hidden) {
        if (!endedAt) queueEvent(EVENT_TYPES.sessionHeartbeat, {});
      } else if (hiddenAt && now() - hiddenAt > HIDDEN_END_MS) {
        endSession();
      }
    }, HEARTBEAT_INTERVAL_MS);

    // Calls queued before the script loaded: window.nilemetrics = [["trackOfferPage", "x"], …]
    if (Array.isArray(existing)) {
      for (const [name, ...args] of existing) {
        if (tracker[name]) tracker[name](...args);
      }
    }

    // No argument to trackVisitAutomatically: the DOMContentLoaded event would read as `again`.
    if (document.readyState == "loading") {
      document.addEventListener("DOMContentLoaded", () => trackVisitAutomatically());
    } else {
      trackVisitAutomatically();
    }
  } catch (error) {
    // A broken tracker is a silent tracker.
  }
})();
