"""Live updates: small change messages over Channels, sent only after the change is committed.

Sockets are never the truth. ``ws/quorum/`` (overview and lists) and ``ws/batches/<0x + 64 lowercase hex>/`` (one
batch) send a snapshot on connect::

    {"type": "snapshot", "seq": 17, "data": {…}}      data: snapshots.live_overview_snapshot / live_batch_snapshot
                                                       (null for a batch not in the ledger yet)

then one message per change, numbered per group (``quorum`` or ``batch.<identifier>``)::

    {"type": "change", "seq": 18, "kind": "signature.accepted", "batch": "0x…"|null, "operator": "0x…"|null,
     "data": {…}}

The server forwards only ``seq == last + 1``; on a gap (or a Redis that lost its counters, or a heartbeat that
finds a message missing) it sends a fresh snapshot instead, and a client may ask for one with
``{"type": "resync"}``. Data carries absolute values, so applying a message twice is harmless. Close codes: 4401 not
logged in (unless PUBLIC_DASHBOARD), 4400 malformed path, 1013 snapshot unavailable (reconnect later).

Kinds and their ``data`` (wei as decimal strings, times ISO 8601 UTC, percentages as floats):

- ``signature.accepted`` (batch, operator): signature_id, stake (at taskCreatedBlock; null while the batch is
  unknown), status ("pending" or "waiting"), conflicting
- ``signature.verified`` (batch, operator): signature_id, stake, status "verified"
- ``signature.invalid`` (batch, operator): signature_id, stake, status "invalid", reason, signer_status (the
  operator's standing after it: "verified", "pending" or null)
- ``progress`` (batch): identifier, status, total_stake, signed_stake, pending_stake, live_unsigned_stake,
  threshold_percentage, signed_percent, pending_percent, at_risk, quorum_reached, quorum_reached_at
- ``quorum.reached`` (batch): quorum_reached_at, signed_stake, total_stake, threshold_percentage
- ``batch.created`` (batch): identifier, status, created_block, task_created_block, signed_percent,
  pending_percent, at_risk, quorum_reached (a row of the overview's recent_batches)
- ``batch.verified`` (batch): identifier, status "verified", verified_block, verified_tx
- ``ingest.backfill``: batches_created, batches_verified, to_block (one chunk made too many batch messages:
  refetch)
- ``operator.state`` (operator): state, previous, since, stake_online_percent
- ``recovery.run`` (batch for a replay of one batch, operator for a catch-up): run_id, kind, scope, dry_run,
  requested_by, outcome, created_at
- ``recovery.task`` (batch for a replay, operator for a catch-up): task_id, kind, subject, action ("requested",
  "done", "retry", "cancel"), status, attempts, detail. Forward tasks only when an attempt failed or was cancelled.
- ``alert.opened`` / ``alert.resolved`` (batch or operator when the alert is about one): id, kind, severity,
  subject, summary

Counters of the overview (batches by status, recovery in flight, alerts open) are not in the messages: a client
refetches them (resync, throttled) on the kinds that move them.
"""
