/* Overview: the quorum socket's snapshot fills the counters directly; lists are re-fetched from the server. */
(function () {
  "use strict";
  var D = window.Dashboard;

  function lookup(data, path) {
    return path.split(".").reduce(function (value, key) {
      return value === null || value === undefined ? undefined : value[key];
    }, data);
  }

  function show(el, value) {
    var format = el.getAttribute("data-format");
    if (value === undefined) return;
    if (format === "pct") {
      el.textContent = D.pct(value);
    } else if (format === "when") {
      el.replaceChildren(D.timeElement(value));
    } else if (format === "boot") {
      el.textContent = value ? String(value).slice(0, 8) : "—";
      el.title = value || "";
    } else {
      el.textContent = value === null ? "—" : String(value);
    }
    if (el.hasAttribute("data-warn")) el.classList.toggle("warn", Number(value) > 0);
  }

  function applySnapshot(data) {
    document.querySelectorAll("[data-snap]").forEach(function (el) {
      show(el, lookup(data, el.getAttribute("data-snap")));
    });
    (data.operators_state || []).forEach(function (op) {
      D.applyOperatorState(op.operator_id, op.state, op.since);
    });
  }

  D.onSnapshot(function (data, context) {
    applySnapshot(data);
    if (!context.first) D.scheduleRefresh();
  });

  // Counters come back with a fresh snapshot (at most twice a second); tables and alerts with the page.
  D.onChange(function () {
    D.scheduleResync();
    D.scheduleRefresh();
  });
})();
