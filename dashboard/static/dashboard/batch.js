/* Batch page: snapshot, progress and signature messages are applied directly to the bar and the signer lists. */
(function () {
  "use strict";
  var D = window.Dashboard;

  function bar() { return document.querySelector('[data-testid="quorum-progress"]'); }
  function field(name) { return document.querySelectorAll('[data-field="' + name + '"]'); }
  function setText(name, text) { field(name).forEach(function (el) { el.textContent = text; }); }

  function big(value) {
    try { return BigInt(String(value === undefined || value === null ? 0 : value).split(".")[0]); } catch (e) { return 0n; }
  }

  function percentOf(part, total) {
    if (total <= 0n) return 0;
    // Four decimals without losing precision on wei-sized numbers.
    return Number((part * 1000000n) / total) / 10000;
  }

  /* The bar, its ARIA values and the legend, from stake in wei (strings) or percentages. */
  function setProgress(p) {
    var el = bar();
    if (!el) return;
    var total = p.total_stake !== undefined ? big(p.total_stake) : big(el.getAttribute("data-total-stake"));
    var signed = p.signed_percent !== undefined ? Number(p.signed_percent) : percentOf(big(p.signed_stake), total);
    var pending = p.pending_percent !== undefined ? Number(p.pending_percent) : percentOf(big(p.pending_stake), total);
    signed = Math.max(0, Math.min(100, signed));
    pending = Math.max(0, Math.min(100 - signed, pending));
    if (p.total_stake !== undefined) el.setAttribute("data-total-stake", String(total));
    if (p.threshold_percentage !== undefined) {
      el.setAttribute("data-threshold", String(p.threshold_percentage));
      el.querySelector(".qbar-threshold").style.left = p.threshold_percentage + "%";
    }
    var threshold = el.getAttribute("data-threshold");
    el.setAttribute("data-signed-percent", signed.toFixed(4));
    el.setAttribute("data-pending-percent", pending.toFixed(4));
    el.setAttribute("aria-valuenow", signed.toFixed(1));
    el.setAttribute("aria-valuetext", D.pct(signed) + " of stake verified, " + D.pct(pending) +
      " pending, quorum at " + threshold + "%");
    el.querySelector(".qbar-signed").style.width = signed + "%";
    var pendingEl = el.querySelector(".qbar-pending");
    pendingEl.style.left = signed + "%";
    pendingEl.style.width = pending + "%";
    setText("signed-percent", D.pct(signed));
    setText("pending-percent", D.pct(pending));
    if (p.signed_stake !== undefined) setText("signed-stake", D.eth(p.signed_stake));
    if (p.pending_stake !== undefined) setText("pending-stake", D.eth(p.pending_stake));
    if (p.total_stake !== undefined) setText("total-stake", D.eth(p.total_stake));
    if (D.charts) D.charts.pushProgress(signed, signed + pending);
  }

  /* Recompute the bar from the signer rows (each carries its stake): right even without a progress message. */
  function progressFromRows() {
    var el = bar();
    if (!el) return;
    var signed = 0n;
    var pending = 0n;
    document.querySelectorAll('#signers [data-testid="signer-row"]').forEach(function (row) {
      var stake = big(row.getAttribute("data-stake"));
      if (row.getAttribute("data-status") === "verified") signed += stake; else pending += stake;
    });
    setProgress({ signed_stake: signed.toString(), pending_stake: pending.toString() });
  }

  // --- Signer lists ----------------------------------------------------------------------------------
  function operatorCell(operatorId) {
    var td = document.createElement("td");
    var a = document.createElement("a");
    a.href = "/operators/" + operatorId + "/";
    a.title = operatorId;
    var code = document.createElement("code");
    code.textContent = D.shortHex(operatorId);
    a.appendChild(code);
    td.appendChild(a);
    return td;
  }

  function cell(text, className) {
    var td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text;
    return td;
  }

  function badge(text, className) {
    var span = document.createElement("span");
    span.className = "badge " + className;
    span.textContent = text;
    return span;
  }

  function signerRow(operatorId, stake, status) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-testid", "signer-row");
    tr.setAttribute("data-operator-id", operatorId);
    tr.setAttribute("data-status", status);
    tr.setAttribute("data-stake", String(big(stake)));
    tr.appendChild(operatorCell(operatorId));
    tr.appendChild(cell(D.eth(stake), "num"));
    var td = document.createElement("td");
    td.appendChild(badge(status, "sig-" + status));
    tr.appendChild(td);
    return tr;
  }

  function nonSignerRow(operatorId, stake, state) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-testid", "non-signer-row");
    tr.setAttribute("data-operator-id", operatorId);
    tr.setAttribute("data-state", state || "unknown");
    tr.setAttribute("data-stake", String(big(stake)));
    tr.appendChild(operatorCell(operatorId));
    tr.appendChild(cell(D.eth(stake), "num"));
    var td = document.createElement("td");
    var dot = document.createElement("span");
    dot.className = "state-dot state-" + (state || "unknown");
    dot.setAttribute("aria-hidden", "true");
    td.appendChild(dot);
    td.appendChild(document.createTextNode(state || "unknown"));
    tr.appendChild(td);
    return tr;
  }

  /* Insert keeping the biggest stake first. */
  function insertSorted(tbody, row) {
    var stake = big(row.getAttribute("data-stake"));
    var before = Array.prototype.find.call(tbody.children, function (other) {
      return big(other.getAttribute("data-stake")) < stake;
    });
    tbody.insertBefore(row, before || null);
  }

  function updateCounts() {
    var signers = document.querySelectorAll('#signers [data-testid="signer-row"]').length;
    var others = document.querySelectorAll('#non-signers [data-testid="non-signer-row"]').length;
    setText("signer-count", "(" + signers + ")");
    setText("non-signer-count", "(" + others + ")");
    var emptySigners = document.querySelector('[data-empty-for="signers"]');
    if (emptySigners) emptySigners.hidden = signers > 0;
    var emptyOthers = document.querySelector('[data-empty-for="non-signers"]');
    if (emptyOthers) emptyOthers.hidden = others > 0;
  }

  function findRow(list, operatorId) {
    return document.querySelector("#" + list + ' [data-operator-id="' + operatorId + '"]');
  }

  /* An operator's signature is pending or verified: show it among the signers. */
  function markSigned(operatorId, status, stake) {
    var row = findRow("signers", operatorId);
    if (row) {
      if (row.getAttribute("data-status") === "verified" && status === "pending") return;
      row.setAttribute("data-status", status);
      var b = row.querySelector(".badge");
      if (b) { b.className = "badge sig-" + status; b.textContent = status; }
      return;
    }
    var other = findRow("non-signers", operatorId);
    var weight = other ? other.getAttribute("data-stake") : stake;
    if (!weight || big(weight) === 0n) return; // no stake at the task's block: it does not count
    if (other) other.remove();
    insertSorted(document.getElementById("signers"), signerRow(operatorId, weight, status));
    updateCounts();
  }

  function markUnsigned(operatorId) {
    var row = findRow("signers", operatorId);
    if (!row || row.getAttribute("data-status") === "verified") return;
    row.remove();
    insertSorted(document.getElementById("non-signers"), nonSignerRow(operatorId, row.getAttribute("data-stake"), "unknown"));
    updateCounts();
  }

  // --- Snapshot: everything from the server's current view -------------------------------------------
  function renderTimeline(entries) {
    var list = document.querySelector("#timeline .timeline");
    if (!list || !entries) return;
    list.replaceChildren.apply(list, entries.map(function (entry) {
      var li = document.createElement("li");
      li.className = "tl tl-" + String(entry.kind).replace(/[^a-z0-9]+/gi, "-").toLowerCase();
      var when = document.createElement("span");
      when.className = "tl-when";
      when.appendChild(D.timeElement(entry.at));
      var text = document.createElement("span");
      text.className = "tl-text";
      text.textContent = entry.text;
      li.appendChild(when);
      li.appendChild(document.createTextNode(" "));
      li.appendChild(text);
      return li;
    }));
  }

  function renderStatus(data) {
    var status = document.querySelector('[data-testid="batch-status"]');
    if (status && data.status) {
      status.className = "badge status-" + data.status;
      status.textContent = data.status.charAt(0).toUpperCase() + data.status.slice(1);
    }
  }

  function applySnapshot(data) {
    if (data.signers && data.non_signers) {
      var signers = document.getElementById("signers");
      var others = document.getElementById("non-signers");
      signers.replaceChildren.apply(signers, data.signers.map(function (s) { return signerRow(s.operator_id, s.stake, s.status); }));
      others.replaceChildren.apply(others, data.non_signers.map(function (n) { return nonSignerRow(n.operator_id, n.stake, n.state); }));
      updateCounts();
    }
    setProgress(data);
    renderStatus(data);
    renderTimeline(data.timeline);
  }

  D.onSnapshot(function (data, context) {
    applySnapshot(data);
    // The header badges (at risk, quorum reached) are re-rendered by the server.
    if (!context.first) D.scheduleRefresh();
  });

  D.onChange(function (message) {
    var data = message.data || {};
    switch (message.kind) {
      case "progress":
        setProgress(data);
        break;
      case "signature.accepted":
        markSigned(message.operator, "pending", data.stake);
        progressFromRows();
        break;
      case "signature.verified":
        markSigned(message.operator, "verified", data.stake);
        progressFromRows();
        break;
      case "signature.invalid":
        markUnsigned(message.operator);
        progressFromRows();
        break;
      default:
        // quorum reached, verified on chain, replays, alerts: take the server's whole view again.
        D.scheduleResync();
        D.scheduleRefresh();
    }
  });
})();
