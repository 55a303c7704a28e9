/* Trackbook's browser tracker: page views, events and identify, sent in batches to
   Trackbook's Segment endpoint as text/plain (a simple request: no CORS preflight).
   Plain ES2017; served minified at /t.js. See "Browser tracking" in the README. */
((window, document, navigator) => {
  const stub = window.trackbook,
    script = document.currentScript || document.querySelector("script[data-key]");
  if (!script || (stub && !Array.isArray(stub))) return; // no tag to read, or loaded twice

  const options = script.dataset,
    endpoint = (options.endpoint || new URL(script.src).origin).replace(/\/+$/, "") + "/segment/v1/batch",
    cookieTail = "; path=/; SameSite=Lax" + (location.protocol == "https:" ? "; Secure" : ""),
    blocked = navigator.doNotTrack == "1" || navigator.globalPrivacyControl === true,
    MAX_QUEUE = 100,
    FLUSH_MS = 1000,
    beaconed = new Set(); // sent with no answer to read: kept stored, resent by the next page

  // localStorage may be disabled or full: then the queue lives in memory only
  const load = (name) => {
    try {
      return localStorage.getItem(name);
    } catch (error) {
      return null;
    }
  };
  const store = (name, value) => {
    try {
      value == null ? localStorage.removeItem(name) : localStorage.setItem(name, value);
    } catch (error) {}
  };
  const bytes = (message) => new TextEncoder().encode(JSON.stringify(message)).length;
  const now = () => new Date().toISOString();
  const uuid = () => {
    const octets = crypto.getRandomValues(new Uint8Array(16));
    octets[6] = (octets[6] & 15) | 64; // version 4
    octets[8] = (octets[8] & 63) | 128; // RFC 4122 variant
    const hex = Array.from(octets, (octet) => (octet + 256).toString(16).slice(1)).join("");
    return hex.replace(/(.{8})(.{4})(.{4})(.{4})/, "$1-$2-$3-$4-");
  };

  let consented = load("tb_consent") == "1" || (options.consent != "required" && load("tb_consent") != "0");
  let held = [], // recorded before consent: in memory only, never sent unless consent comes
    queue = [],
    inflight = [],
    sending = null,
    timer = 0,
    failures = 0,
    referrer = document.referrer,
    lastUrl = "";

  const save = () => consented && store("tb_queue", queue.length ? JSON.stringify(queue) : null);
  const forget = (sent) => {
    queue = queue.filter((m) => !sent.includes(m));
    save();
  };

  // fetch keepalive and sendBeacon refuse bodies over 64 KiB
  const chunks = (messages) => {
    const all = [[]];
    let size = 0;
    for (const message of messages) {
      const last = all[all.length - 1];
      size += bytes(message);
      if (last.length == 20 || (last.length && size > 60000)) {
        all.push([]);
        size = bytes(message);
      }
      all[all.length - 1].push(message);
    }
    return all.filter((chunk) => chunk.length);
  };
  const body = (batch) => JSON.stringify({ batch, sentAt: now(), writeKey: options.key });

  const schedule = (delay) => {
    if (!timer && queue.length) timer = setTimeout(send, delay);
  };

  function send() {
    clearTimeout(timer);
    timer = 0;
    const waiting = queue.filter((m) => !beaconed.has(m));
    if (sending || !waiting.length) return sending || Promise.resolve();
    inflight = chunks(waiting)[0];
    sending = fetch(endpoint, {
      method: "POST",
      keepalive: true,
      body: body(inflight),
      headers: { "Content-Type": "text/plain" }
    })
      .then((response) => {
        // any other 4xx (a bad key, a refused origin, an invalid event) fails again
        if (response.status >= 500 || response.status == 408 || response.status == 429) throw 0;
        failures = 0;
        forget(inflight);
      })
      .catch(() => failures++)
      .then(() => {
        inflight = [];
        sending = null;
        if (!failures) return send();
        // exponential backoff with jitter, at most 5 minutes
        schedule(Math.min(300000, FLUSH_MS * 2 ** failures * (0.5 + Math.random())));
      });
    return sending;
  }

  // The page may be going away: what is not already on its way leaves now. A beacon's
  // answer cannot be read, and a keepalive fetch in flight outlives the page, so both
  // stay stored until answered: the next page sends them again (the messageId makes
  // the copy a duplicate, stored once).
  const beacon = () => {
    const waiting = queue.filter((m) => !inflight.includes(m) && !beaconed.has(m));
    for (const batch of chunks(waiting)) {
      if (navigator.sendBeacon && navigator.sendBeacon(endpoint, body(batch))) batch.forEach((m) => beaconed.add(m));
    }
  };

  const release = () => {
    if (!consented || !held.length) return;
    const found = document.cookie.match(/(?:^|;\s*)tb_vid=([\w-]+)/);
    const visitor = found ? found[1] : uuid();
    // renewed on every visit: a returning visitor keeps the id for a year after the last
    document.cookie = "tb_vid=" + visitor + "; max-age=31536000" + cookieTail;
    for (const message of held.splice(0)) queue.push(Object.assign(message, { anonymousId: visitor }));
    queue = queue.slice(-MAX_QUEUE);
    save();
    schedule(FLUSH_MS);
  };

  const pageContext = () => ({
    url: location.href,
    path: location.pathname,
    referrer,
    title: document.title,
    search: location.search
  });

  const record = (message) => {
    if (blocked) return;
    const query = new URLSearchParams(location.search);
    const campaign = {};
    for (const part of ["source", "medium", "campaign", "term", "content"]) {
      const value = query.get("utm_" + part);
      if (value) campaign[part == "campaign" ? "name" : part] = value;
    }
    Object.assign(message, {
      messageId: uuid(),
      originalTimestamp: now(),
      context: {
        page: pageContext(),
        campaign: Object.keys(campaign).length ? campaign : undefined,
        userAgent: navigator.userAgent,
        library: { name: "trackbook.js", version: "1.0.0" }
      }
    });
    // Trackbook, as Segment, refuses an event over 32 KB
    if (bytes(message) <= 32000) held.push(message);
    release();
  };

  const api = {
    page(properties) {
      if (lastUrl && lastUrl != location.href) referrer = lastUrl; // a single-page app moved on
      lastUrl = location.href;
      record({ type: "page", properties: Object.assign(pageContext(), properties) });
    },
    track(name, properties) {
      record({ type: "track", event: String(name), properties: Object.assign({}, properties) });
    },
    identify(email, traits) {
      record({ type: "identify", traits: Object.assign({}, traits, { email }) });
    },
    consent(granted) {
      if (blocked) return;
      consented = !!granted;
      store("tb_consent", consented ? "1" : "0");
      if (consented) return release();
      held = [];
      queue = [];
      store("tb_queue", null);
      document.cookie = "tb_vid=; max-age=0" + cookieTail;
    },
    flush: send,
    push(call) {
      const method = call[0] != "push" && api[call[0]];
      if (typeof method == "function") method.apply(api, [].slice.call(call, 1));
    }
  };

  if (!blocked && consented) {
    try {
      const saved = JSON.parse(load("tb_queue"));
      if (Array.isArray(saved)) queue = saved.slice(-MAX_QUEUE);
    } catch (error) {}
    schedule(FLUSH_MS);
  }
  window.trackbook = api;
  window.addEventListener("pagehide", beacon);
  document.addEventListener("visibilitychange", () => document.visibilityState == "hidden" && beacon());
  api.page();
  for (const call of stub || []) api.push(call);
})(window, document, navigator);
