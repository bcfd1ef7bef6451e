/* Live updates for the dashboard.
 *
 * The page is always rendered completely on the server; the socket only says "something changed". Messages:
 *   {"type": "snapshot", "seq": N, "data": {...}}                      on connect and after {"type": "resync"}
 *   {"type": "change", "seq": N, "kind": "...", "batch": ..., "operator": ..., "data": {...}}
 * A change whose seq is not last + 1 means something was missed: ask for a fresh snapshot (resync). Every
 * reconnect asks for one too. Pages register handlers with Dashboard.onSnapshot / Dashboard.onChange; without
 * them a change re-fetches this page and swaps its [data-live-region] parts, at most twice a second.
 */
(function () {
  "use strict";

  var THROTTLE_MS = 500;
  var BACKOFF_MIN_MS = 500;
  var BACKOFF_MAX_MS = 15000;
  var OFFLINE_AFTER_ATTEMPTS = 5;
  var RELATIVE_EVERY_MS = 15000;
  // The consumers' application close codes: a malformed path, and no (longer a) logged-in user.
  var CLOSE_BAD_REQUEST = 4400;
  var CLOSE_UNAUTHORIZED = 4401;

  // --- Formatting, the same rules as dashboard/formatting.py ------------------------------------------
  var WEI_PER_CENT = BigInt("10000000000000000");

  function eth(wei) {
    if (wei === null || wei === undefined || wei === "") return "—";
    var value;
    try { value = BigInt(String(wei).split(".")[0]); } catch (e) { return "—"; }
    if (value > 0n && value < WEI_PER_CENT) return "<0.01 ETH";
    var cents = (value + WEI_PER_CENT / 2n) / WEI_PER_CENT;
    var whole = (cents / 100n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    var frac = (cents % 100n).toString().padStart(2, "0");
    return whole + "." + frac + " ETH";
  }

  function pct(value) {
    if (value === null || value === undefined || isNaN(Number(value))) return "—";
    return Number(value).toFixed(1) + "%";
  }

  function shortHex(value, keep) {
    keep = keep || 6;
    if (!value) return "—";
    if (value.length <= 2 + 2 * keep + 1) return value;
    return value.slice(0, 2 + keep) + "…" + value.slice(-keep);
  }

  function span(seconds) {
    if (seconds < 60) return Math.floor(seconds) + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min";
    if (seconds < 86400) return Math.floor(seconds / 3600) + " h";
    return Math.floor(seconds / 86400) + " d";
  }

  function relative(date, now) {
    var seconds = ((now || new Date()) - date) / 1000;
    if (Math.abs(seconds) < 2) return "just now";
    return seconds > 0 ? span(seconds) + " ago" : "in " + span(-seconds);
  }

  function utc(date) {
    return date.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC").replace(/Z$/, " UTC");
  }

  function timeElement(iso) {
    if (!iso) {
      var none = document.createElement("span");
      none.className = "muted";
      none.textContent = "never";
      return none;
    }
    var date = new Date(iso);
    var el = document.createElement("time");
    el.dateTime = iso;
    el.title = utc(date);
    el.setAttribute("data-relative", "");
    el.textContent = relative(date);
    return el;
  }

  function refreshRelativeTimes(root) {
    var now = new Date();
    (root || document).querySelectorAll("time[data-relative]").forEach(function (el) {
      var date = new Date(el.dateTime);
      if (!isNaN(date)) el.textContent = relative(date, now);
    });
  }

  /* fn at once, then at most once per `ms` however often it is asked for (the last ask is never lost). */
  function throttle(fn, ms) {
    var timer = null;
    var again = false;
    function run() {
      if (timer) { again = true; return; }
      fn();
      timer = setTimeout(function () {
        timer = null;
        if (again) { again = false; run(); }
      }, ms);
    }
    return run;
  }

  // --- Region refresh: re-fetch this page and swap the parts marked data-live-region ----------------
  var refreshing = null;

  function refreshRegions() {
    if (refreshing) return refreshing;
    refreshing = fetch(window.location.href, {
      credentials: "same-origin",
      headers: { "X-Live-Refresh": "1", Accept: "text/html" },
    })
      .then(function (response) {
        // A redirect to the login page (session expired) is not this page: keep what is shown.
        if (!response.ok || response.redirected) return null;
        return response.text();
      })
      .then(function (html) {
        if (html) swapRegions(new DOMParser().parseFromString(html, "text/html"));
      })
      .catch(function () { /* the next change or reconnect tries again */ })
      .finally(function () { refreshing = null; });
    return refreshing;
  }

  function swapRegions(fresh) {
    document.querySelectorAll("[data-live-region][id]").forEach(function (old) {
      var replacement = fresh.getElementById(old.id);
      if (!replacement) return;
      // Never pull the rug from under someone typing or clicking in it.
      if (old.contains(document.activeElement) && document.activeElement !== document.body) return;
      var open = Array.prototype.map.call(old.querySelectorAll("details"), function (d) { return d.open; });
      var node = document.importNode(replacement, true);
      var details = node.querySelectorAll("details");
      if (details.length === open.length) details.forEach(function (d, i) { d.open = open[i]; });
      old.replaceWith(node);
      if (window.htmx) window.htmx.process(node);
    });
    refreshRelativeTimes();
    document.dispatchEvent(new CustomEvent("dashboard:refreshed"));
  }

  // --- Operator state: applied at once wherever an operator row is shown ----------------------------
  function applyOperatorState(operatorId, state, since) {
    if (!operatorId || !state) return;
    var selector = '[data-testid="operator-row"][data-operator-id="' + operatorId + '"]';
    document.querySelectorAll(selector).forEach(function (row) {
      row.setAttribute("data-state", state);
      row.querySelectorAll(".state-label").forEach(function (el) { el.textContent = state; });
      row.querySelectorAll(".state-dot").forEach(function (el) { el.className = "state-dot state-" + state; });
      row.querySelectorAll(".state-badge").forEach(function (el) {
        el.className = "badge state-badge state-bg-" + state;
      });
      if (since) {
        row.querySelectorAll(".state-since").forEach(function (el) {
          el.replaceChildren(timeElement(since));
        });
      }
    });
  }

  // --- The socket ------------------------------------------------------------------------------------
  var handlers = { snapshot: [], change: [] };
  var live = { lastSeq: null, awaiting: true, socket: null, snapshots: 0 };

  function indicator(state, text) {
    document.querySelectorAll('[data-testid="live-indicator"]').forEach(function (el) {
      el.setAttribute("data-state", state);
      var label = el.querySelector(".live-text");
      if (label) label.textContent = text;
    });
  }

  function send(message) {
    if (live.socket && live.socket.readyState === WebSocket.OPEN) {
      live.socket.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  function resync() {
    live.awaiting = true;
    send({ type: "resync" });
  }

  function onMessage(event) {
    var message;
    try { message = JSON.parse(event.data); } catch (e) { return; }
    if (message.type === "snapshot") {
      live.lastSeq = typeof message.seq === "number" ? message.seq : null;
      live.awaiting = false;
      live.snapshots += 1;
      var context = { first: live.snapshots === 1 };
      handlers.snapshot.forEach(function (fn) { fn(message.data || {}, context); });
      return;
    }
    if (message.type !== "change") return;
    if (message.kind === "operator.state" && message.data) {
      applyOperatorState(message.operator, message.data.state, message.data.since);
    }
    if (live.awaiting || live.lastSeq === null) return; // the snapshot on its way covers it
    if (message.seq <= live.lastSeq) return; // already in the snapshot
    if (message.seq > live.lastSeq + 1) { resync(); return; } // a gap: refetch
    live.lastSeq = message.seq;
    handlers.change.forEach(function (fn) { fn(message); });
  }

  function connect(path) {
    var attempts = 0;
    var opened = false;
    var url = (window.location.protocol === "https:" ? "wss://" : "ws://") + window.location.host + "/" +
      path.replace(/^\//, "");

    function open() {
      var socket;
      try { socket = new WebSocket(url); } catch (e) { retry(); return; }
      live.socket = socket;
      live.awaiting = true;
      socket.addEventListener("open", function () {
        attempts = 0;
        indicator("live", "live");
        // The server sends a snapshot on connect; after a reconnect ask again anyway (and refresh the rest).
        if (opened) resync();
        opened = true;
      });
      socket.addEventListener("message", onMessage);
      socket.addEventListener("close", function (event) {
        if (live.socket === socket) live.socket = null;
        if (event.code === CLOSE_BAD_REQUEST) { indicator("offline", "not live"); return; } // retrying cannot help
        if (event.code === CLOSE_UNAUTHORIZED) attempts = Math.max(attempts, OFFLINE_AFTER_ATTEMPTS); // logged out
        retry();
      });
    }

    function retry() {
      attempts += 1;
      indicator(attempts > OFFLINE_AFTER_ATTEMPTS ? "offline" : "reconnecting",
        attempts > OFFLINE_AFTER_ATTEMPTS ? "offline, retrying" : "reconnecting…");
      var delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, attempts - 1));
      setTimeout(open, delay * (0.75 + Math.random() / 2));
    }

    open();
  }

  var loadedAt = Date.now();
  var scheduleRefresh = throttle(refreshRegions, THROTTLE_MS);
  var scheduleResync = throttle(resync, THROTTLE_MS);

  window.Dashboard = {
    eth: eth,
    pct: pct,
    shortHex: shortHex,
    relative: relative,
    utc: utc,
    timeElement: timeElement,
    throttle: throttle,
    refreshRegions: refreshRegions,
    scheduleRefresh: scheduleRefresh,
    scheduleResync: scheduleResync,
    applyOperatorState: applyOperatorState,
    wanted: wanted,
    state: live,
    send: send,
    resync: resync,
    /* Replace the default handlers: fn(data, {first}) for snapshots, fn(message) for in-order changes. */
    onSnapshot: function (fn) { handlers.snapshot = handlers.snapshot.filter(function (h) { return !h.isDefault; }); handlers.snapshot.push(fn); },
    onChange: function (fn) { handlers.change = handlers.change.filter(function (h) { return !h.isDefault; }); handlers.change.push(fn); },
  };

  // Defaults for list pages: any change, and any snapshot after the first few seconds, re-fetches the regions.
  function defaultSnapshot(data, context) {
    if (!context.first || Date.now() - loadedAt > 3000) scheduleRefresh();
  }
  defaultSnapshot.isDefault = true;
  // <body data-live-kinds="recovery. operator.state"> narrows which kinds re-fetch the page (prefixes).
  function wanted(kind) {
    var kinds = (document.body.getAttribute("data-live-kinds") || "").split(/\s+/).filter(Boolean);
    return !kinds.length || kinds.some(function (prefix) { return String(kind).indexOf(prefix) === 0; });
  }
  function defaultChange(message) { if (wanted(message.kind)) scheduleRefresh(); }
  defaultChange.isDefault = true;
  handlers.snapshot.push(defaultSnapshot);
  handlers.change.push(defaultChange);

  document.addEventListener("DOMContentLoaded", function () {
    var path = document.body.getAttribute("data-live-path");
    if (path && "WebSocket" in window) connect(path);
    setInterval(refreshRelativeTimes, RELATIVE_EVERY_MS);
  });
})();
