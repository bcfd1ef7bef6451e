/* Staff recovery buttons: POST JSON to the recovery API with the session cookie and the CSRF token, show the
 * answer (the plan of a dry run, the run id of a start) next to the buttons. The API is the real gate. */
(function () {
  "use strict";
  var D = window.Dashboard;

  function csrfToken() {
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (match) return decodeURIComponent(match[1]);
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function el(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  function request(box) {
    var form = document.querySelector("[data-recovery-form]");
    var action = box.getAttribute("data-recovery-action");
    var target = box.getAttribute("data-target");
    if (form && box.closest("section") === form.closest("section")) {
      action = form.elements.kind.value;
      target = form.elements.target.value.trim();
    }
    return { action: action, target: target };
  }

  function body(action, target, dryRun) {
    if (action === "catchup") return { operator_id: target, dry_run: dryRun };
    if (target === "all-pending") return { all_pending: true, dry_run: dryRun };
    return { batch: target, dry_run: dryRun };
  }

  function planList(run) {
    var plan = run.plan || {};
    if (run.kind === "respond") return responsePlan(plan);
    var list = el("ul");
    (plan.batches || []).slice(0, 20).forEach(function (batch) {
      var text = D.shortHex(batch.identifier);
      if (batch.verified_signatures !== undefined) text += ": " + batch.verified_signatures + " verified signature(s) to resend";
      else if (batch.batchMerkleRoot) text += " (root " + D.shortHex(batch.batchMerkleRoot) + ")";
      list.appendChild(el("li", text));
    });
    (plan.skipped || []).slice(0, 20).forEach(function (skip) {
      list.appendChild(el("li", D.shortHex(skip.identifier) + " skipped: " + skip.reason));
    });
    var more = (plan.batches || []).length + (plan.skipped || []).length - list.children.length;
    if (more > 0) list.appendChild(el("li", "… and " + more + " more"));
    return list;
  }

  // A standby response's plan: who signed, the simulated call, and EigenLayer's struct as it would be sent.
  function responsePlan(plan) {
    var list = el("ul");
    if (plan.skipped) {
      list.appendChild(el("li", "skipped: " + plan.skipped));
      return list;
    }
    var response = plan.response || {};
    list.appendChild(el("li", (response.signers || []).length + " signer(s), " + (response.nonSigners || []).length +
      " non-signer(s), " + response.signedPercentage + "% of the stake at block " + response.taskCreatedBlock));
    var simulation = plan.simulation || {};
    var sim = el("li", simulation.reverts ? "simulated call reverts: " + simulation.revert : "simulated call succeeds");
    sim.setAttribute("data-testid", "response-simulation");
    list.appendChild(sim);
    var item = el("li");
    var details = item.appendChild(el("details"));
    details.appendChild(el("summary", "NonSignerStakesAndSignature"));
    details.appendChild(el("pre", JSON.stringify(response.nonSignerStakesAndSignature, null, 2), "wrap small"));
    list.appendChild(item);
    return list;
  }

  function showRun(result, run) {
    result.className = "action-result ok";
    result.setAttribute("data-state", "ok");
    result.setAttribute("data-run-id", String(run.id));
    result.setAttribute("data-dry-run", String(Boolean(run.dry_run)));
    var head = el("p");
    head.appendChild(el("strong", (run.dry_run ? "Dry run" : "Run") + " #" + run.id));
    head.appendChild(document.createTextNode(" recorded by " + run.requested_by + "."));
    var outcome = el("p", run.outcome, "outcome");
    outcome.setAttribute("data-testid", "recovery-outcome");
    result.replaceChildren(head, outcome);
    var list = planList(run);
    if (list.children.length) {
      result.appendChild(el("p", run.dry_run ? "Plan:" : "Requested:", "muted small"));
      result.appendChild(list);
    }
    if (!run.dry_run) {
      var link = el("a", "Follow it on the recovery page →");
      link.href = "/recovery/";
      result.appendChild(el("p")).appendChild(link);
    }
  }

  function showError(result, status, answer) {
    result.className = "action-result failed";
    result.setAttribute("data-state", "error");
    result.removeAttribute("data-run-id");
    var message = answer && answer.error ? answer.error : "the request failed";
    if (status === 401 || status === 403) message = "Only staff can start recovery (" + message + ")";
    result.replaceChildren(el("p", "Not started: " + message + (status ? " (HTTP " + status + ")" : "")));
  }

  function run(box, button) {
    var result = box.querySelector('[data-testid="recovery-result"]');
    var what = request(box);
    var dryRun = button.getAttribute("data-dry-run") === "true";
    var url = box.getAttribute("data-" + what.action + "-url");
    var buttons = box.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    result.hidden = false;
    result.className = "action-result";
    result.setAttribute("data-state", "running");
    result.replaceChildren(el("p", dryRun ? "Planning…" : "Starting…"));
    fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(body(what.action, what.target, dryRun)),
    })
      .then(function (response) {
        return response.json().catch(function () { return null; }).then(function (answer) {
          if (response.ok && answer) {
            showRun(result, answer);
            if (!dryRun && D) D.scheduleRefresh();
          } else {
            showError(result, response.status, answer);
          }
        });
      })
      .catch(function () { showError(result, 0, { error: "the server did not answer" }); })
      .finally(function () { buttons.forEach(function (b) { b.disabled = false; }); });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-recovery-action] button[data-dry-run]");
    if (!button) return;
    event.preventDefault();
    run(button.closest("[data-recovery-action]"), button);
  });
})();
