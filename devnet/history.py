"""A realistic history for scale measurements, written set-based (INSERT … SELECT generate_series) in minutes.

The shape is what a control plane holds after running with the default retention: every batch in the ledger with
its events, progress summary and quorum change; full detail (signatures, forward tasks, deliveries, webhook
attempts, finished recovery tasks) only for batches inside the retention window, because older detail is what
``retention_prune`` deletes. Batch ``i`` is first seen ``(N - i) * interval`` seconds before the generation time.

Who signed batch ``i`` comes from one of ``PATTERNS`` signer sets (80% of operators on average), so the
signature rows and the progress lists agree. Forgeries (invalid, from a stranger's address) and conflicting
pairs appear at fixed strides. The newest ``pending`` batches are pending at the aggregator; the lagging operator
has signed none of the newest ``lagging`` of them (the catch-up plan's worst case), and a few signatures of the
newest batches are real, pending and verifiable (the verifier's work).

Identifiers are sha256-derived lowercase hex, not keccak: nothing here is checked against a chain.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from bls import keypair_from_seed
from chain.abi import operator_id_of
from intake.models import Signature
from ledger.models import Batch, Operator

CHAIN_ID = 31337
PATTERNS = 64
SENDERS = 5
# Strides of the rare rows: a forgery, an at-risk episode, a conflicting pair, an orphaned batch.
FORGERY_EVERY = 500
AT_RISK_EVERY = 2000
CONFLICT_EVERY = 20_000
ORPHAN_EVERY = 9973
# An operator is down for DOWNTIME every DOWN_EVERY (staggered), an aggregator restarts every BOOT_EVERY.
DOWN_EVERY = timedelta(days=3)
DOWNTIME = timedelta(minutes=10)
BOOT_EVERY = timedelta(days=7)
REAL_PENDING_SIGNERS = 4
REAL_PENDING_BATCHES = 5


@dataclass(frozen=True)
class HistoryShape:
    batches: int
    operators: int = 100
    interval: float = 31.5  # seconds between batches: 1M batches is a year
    pending: int = 120
    lagging: int = 100
    window_days: float | None = None  # default: RETENTION_SIGNATURE_DAYS
    seed: str = "history"


def _h(expr: str, length: int = 64) -> str:
    """SQL for lowercase 0x hex derived from an SQL text expression."""
    return f"'0x' || substr(encode(sha256(convert_to({expr}, 'UTF8')), 'hex'), 1, {length})"


def history_is_empty() -> bool:
    return not (Batch.objects.exists() or Signature.objects.exists() or Operator.objects.exists())


def history_clear() -> None:
    """Empty every table the generator fills (and the rest of the ledger): a clean start, not a merge."""
    tables = [
        "monitoring_chainevent", "monitoring_batch", "monitoring_operator", "monitoring_operatorstake",
        "monitoring_block", "monitoring_ingestcursor", "monitoring_ingestincident", "monitoring_signature",
        "monitoring_batchrefusal", "monitoring_batchprogress", "monitoring_batchprogresschange",
        "monitoring_operatorliveness", "monitoring_operatorstatechange", "monitoring_alert", "monitoring_alertwatch",
        "monitoring_webhookendpoint", "monitoring_webhookdelivery", "monitoring_webhookattempt",
        "recovery_recoverytask", "recovery_recoveryrun", "recovery_aggregatorboot", "recovery_signaturedelivery",
        "recovery_catchupask", "recovery_responsetransaction",
    ]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


def history_generate(*, shape: HistoryShape, report: Callable[[str], None] = print) -> dict[str, int]:
    """Fill an empty database with ``shape``'s history; returns the row count of each table written."""
    if shape.batches < 1 or shape.operators < 2:
        raise ValueError("need at least 1 batch and 2 operators")
    if shape.lagging > shape.pending:
        raise ValueError("the lagging operator can only owe pending batches (--lagging <= --pending)")
    window = shape.window_days if shape.window_days is not None else float(settings.RETENTION_SIGNATURE_DAYS)
    now = timezone.now().replace(microsecond=0)
    params: dict[str, Any] = {
        "n": shape.batches,
        "ops": shape.operators,
        "iv": shape.interval,
        "pending": shape.pending,
        "lagging": shape.lagging,
        "seed": shape.seed,
        "now": now,
        "window_start": now - timedelta(days=window),
        "chain": CHAIN_ID,
        "manager": str(settings.SERVICE_MANAGER_ADDRESS or "").lower() or "0x" + "5e" * 20,
    }
    counts: dict[str, int] = {}

    def step(name: str, sql: str, extra: dict[str, Any] | None = None) -> None:
        started = time.monotonic()
        with connection.cursor() as cursor:
            cursor.execute(sql, {**params, **(extra or {})})
            counts[name] = counts.get(name, 0) + max(cursor.rowcount, 0)
        report(f"  {name}: {counts[name]:,} rows ({time.monotonic() - started:.1f} s)")

    report(
        f"history: {shape.batches:,} batches, {shape.operators} operators, one every {shape.interval:g} s, "
        f"detail kept for {window:g} days"
    )
    with transaction.atomic():
        _operators(shape=shape, step=step)
        for name, sql in _STEPS:
            step(name, sql)
        _real_pending(shape=shape, now=now, step=step)
    with connection.cursor() as cursor:
        # Fresh statistics: the planner must see the history, as autovacuum would after a day of it.
        started = time.monotonic()
        cursor.execute("ANALYZE")
        # BRIN ranges filled since an index was made are summarised by autovacuum (autosummarize) in its own
        # time; a year of history has had that time, so it is done now.
        cursor.execute(
            "SELECT brin_summarize_new_values(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_am a ON a.oid = c.relam WHERE a.amname = 'brin'"
        )
        report(f"  analyze: {time.monotonic() - started:.1f} s")
    return counts


def _operators(*, shape: HistoryShape, step: Callable[..., None]) -> None:
    """Operators with real BLS keys (their ids are keccak of the G1 key), registered and staked at block 1."""
    rows = []
    for index in range(shape.operators):
        pair = keypair_from_seed(shape.seed, index)
        g1 = pair.public_key_g1.to_hex()
        rows.append((index, operator_id_of(g1), g1, pair.public_key_g2.to_hex()))
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE history_operator (idx int, operator_id text, g1 jsonb, g2 jsonb)")
        cursor.executemany(
            "INSERT INTO history_operator VALUES (%s, %s, %s, %s)",
            [(i, op, _json(g1), _json(g2)) for i, op, g1, g2 in rows],
        )
    step("operators", _OPERATORS)


def _json(value: object) -> str:
    return json.dumps(value)


def _real_pending(*, shape: HistoryShape, now: datetime, step: Callable[..., None]) -> None:
    """Real, pending signatures on the newest batches: the verifier's next pass has genuine work."""
    newest = list(
        Batch.objects.filter(status="pending")
        .order_by("-created_block")
        .values_list("identifier", flat=True)[:REAL_PENDING_BATCHES]
    )
    keys = [keypair_from_seed(shape.seed, i) for i in range(REAL_PENDING_SIGNERS)]
    rows = []
    for identifier in newest:
        message = bytes.fromhex(identifier[2:])
        for index, pair in enumerate(keys):
            signature = pair.sign(message)
            x, y = signature.to_evm()
            rows.append((identifier, index, f"0x{x:064x}", f"0x{y:064x}"))
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE history_real (identifier text, idx int, x text, y text)")
        cursor.executemany("INSERT INTO history_real VALUES (%s, %s, %s, %s)", rows)
    step("signatures (real, pending)", _REAL_PENDING, {"real_now": now})


_OPERATORS = f"""
WITH ops AS (
    SELECT idx, operator_id, g1, g2, {_h("'addr' || %(seed)s || idx", 40)} AS address,
        (10 + idx %% 7 * 5)::numeric * 1000000000000000000 AS stake
    FROM history_operator
), registered AS (
    INSERT INTO monitoring_chainevent (chain_id, block_number, block_hash, log_index, transaction_hash,
        transaction_index, address, topic0, name, subject, args, removed, ingested_at)
    SELECT %(chain)s, 1, {_h("'block1'")}, idx * 2, {_h("'regtx' || idx")}, idx, %(manager)s,
        {_h("'OperatorRegistered'")}, 'OperatorRegistered', operator_id,
        jsonb_build_object('operator', address, 'operatorId', operator_id), false,
        %(now)s - (%(n)s * %(iv)s + 60) * interval '1 second'
    FROM ops
), staked AS (
    INSERT INTO monitoring_chainevent (chain_id, block_number, block_hash, log_index, transaction_hash,
        transaction_index, address, topic0, name, subject, args, removed, ingested_at)
    SELECT %(chain)s, 1, {_h("'block1'")}, idx * 2 + 1, {_h("'regtx' || idx")}, idx, %(manager)s,
        {_h("'OperatorStakeUpdate'")}, 'OperatorStakeUpdate', operator_id,
        jsonb_build_object('operatorId', operator_id, 'quorumNumber', 0, 'stake', stake::text), false,
        %(now)s - (%(n)s * %(iv)s + 60) * interval '1 second'
    FROM ops
    RETURNING id, subject, args
), stakes AS (
    INSERT INTO monitoring_operatorstake (operator_id, quorum_number, stake, block_number, log_index, event_id,
        removed)
    SELECT subject, 0, (args->>'stake')::numeric, 1, 1, id, false FROM staked
)
INSERT INTO monitoring_operator (operator_id, address, pubkey_g1, pubkey_g2, socket, registered, registered_block,
    deregistered_block, current_stake, updated_at)
SELECT operator_id, address, g1, g2, 'http://10.0.' || (idx / 250) || '.' || (idx %% 250 + 1) || ':9000', true,
    1, NULL, stake, %(now)s
FROM ops
"""

# Batch i of n: first seen (n - i) intervals ago, three blocks apart, quorum 6 to 25 s after its sighting.
_BATCH_COLUMNS = f"""
    i, {_h("%(seed)s || ':root:' || i")} AS merkle_root,
    {_h(f"%(seed)s || ':sender:' || (i %% {SENDERS})", 40)} AS sender,
    {_h("%(seed)s || ':batch:' || i")} AS identifier,
    100 + i * 3 AS block,
    %(now)s - (%(n)s - i) * %(iv)s * interval '1 second' AS seen,
    6 + (i * 7919) %% 20 AS quorum_s,
    CASE WHEN i > %(n)s - %(pending)s THEN 'pending' WHEN i %% {ORPHAN_EVERY} = 0 THEN 'orphaned'
        ELSE 'verified' END AS status,
    (i * 2654435761) %% {PATTERNS} AS pattern
"""

_STEPS: list[tuple[str, str]] = [
    (
        "signer patterns",
        f"""
        CREATE TEMP TABLE history_pattern AS
        SELECT p AS pattern, o.idx, o.operator_id, o.current_stake AS stake
        FROM generate_series(0, {PATTERNS} - 1) p
        CROSS JOIN (SELECT h.idx, m.operator_id, m.current_stake FROM history_operator h
                    JOIN monitoring_operator m USING (operator_id)) o
        WHERE (p * 31 + o.idx * 17 + p * o.idx) %% 5 <> 0
        """,
    ),
    (
        "batch plan",
        f"CREATE TEMP TABLE history_batch AS SELECT {_BATCH_COLUMNS} FROM generate_series(1, %(n)s::bigint) i",
    ),
    # Liveness windows and aggregator boots find their batches by time: without an index that is a nested loop
    # over every batch for each window.
    ("batch plan index", "CREATE INDEX ON history_batch (seen)"),
    ("batch plan statistics", "ANALYZE history_batch"),
    (
        "batches",
        """
        INSERT INTO monitoring_batch (identifier, merkle_root, sender, task_created_block, data_pointer, fee_limit,
            event_version, status, created_block, created_tx, verified_block, verified_tx, first_seen_at, updated_at)
        SELECT identifier, merkle_root, sender, block, 'https://batches.example/' || i || '.json',
            10000000000000000, 3, status, block, '0x' || encode(sha256(convert_to('tx' || i, 'UTF8')), 'hex'),
            CASE WHEN status = 'verified' THEN block + 2 END,
            CASE WHEN status = 'verified' THEN '0x' || encode(sha256(convert_to('vtx' || i, 'UTF8')), 'hex')
                ELSE '' END,
            seen, seen + quorum_s * interval '1 second'
        FROM history_batch ORDER BY i
        """,
    ),
    (
        "events",
        """
        INSERT INTO monitoring_chainevent (chain_id, block_number, block_hash, log_index, transaction_hash,
            transaction_index, address, topic0, name, subject, args, removed, ingested_at)
        SELECT %(chain)s, block + e.offset_, '0x' || encode(sha256(convert_to('blk' || (block + e.offset_), 'UTF8')),
                'hex'),
            0, '0x' || encode(sha256(convert_to(e.name || i, 'UTF8')), 'hex'), 0, %(manager)s,
            '0x' || encode(sha256(convert_to(e.name, 'UTF8')), 'hex'), e.name, identifier,
            CASE WHEN e.name = 'NewBatchV3' THEN jsonb_build_object('batchMerkleRoot', merkle_root,
                    'senderAddress', sender, 'taskCreatedBlock', block,
                    'batchDataPointer', 'https://batches.example/' || i || '.json',
                    'respondToTaskFeeLimit', '10000000000000000')
                ELSE jsonb_build_object('batchMerkleRoot', merkle_root, 'senderAddress', sender) END,
            false, seen + e.offset_ * 12 * interval '1 second'
        FROM history_batch
        CROSS JOIN (VALUES ('NewBatchV3', 0), ('BatchVerified', 2)) AS e(name, offset_)
        WHERE e.name = 'NewBatchV3' OR status = 'verified'
        ORDER BY block + e.offset_
        """,
    ),
    (
        "progress",
        """
        INSERT INTO monitoring_batchprogress (batch_id, total_stake, signed_stake, live_unsigned_stake,
            threshold_percentage, signed_operator_ids, unsigned_operator_ids, quorum_reached_at, quorum_ms, at_risk,
            updated_at)
        SELECT b.id, t.total, s.signed, CASE WHEN hb.status = 'pending' THEN t.total - s.signed ELSE 0 END, 67,
            s.ids, u.ids,
            CASE WHEN hb.status <> 'orphaned' THEN hb.seen + hb.quorum_s * interval '1 second' END,
            CASE WHEN hb.status <> 'orphaned' THEN hb.quorum_s * 1000 END, false,
            hb.seen + hb.quorum_s * interval '1 second'
        FROM history_batch hb
        JOIN monitoring_batch b ON b.identifier = hb.identifier
        CROSS JOIN (SELECT sum(current_stake) AS total FROM monitoring_operator) t
        JOIN (SELECT pattern, sum(stake) AS signed, jsonb_agg(operator_id ORDER BY operator_id) AS ids
              FROM history_pattern GROUP BY pattern) s ON s.pattern = hb.pattern
        JOIN (SELECT p.pattern, coalesce(jsonb_agg(o.operator_id ORDER BY o.operator_id)
                  FILTER (WHERE hp.idx IS NULL), '[]') AS ids
              FROM generate_series(0, 63) p(pattern) CROSS JOIN monitoring_operator o
              LEFT JOIN history_pattern hp ON hp.pattern = p.pattern AND hp.operator_id = o.operator_id
              GROUP BY p.pattern) u ON u.pattern = hb.pattern
        ORDER BY hb.i
        """,
    ),
    (
        "progress changes",
        f"""
        INSERT INTO monitoring_batchprogresschange (batch_identifier, kind, signed_stake, total_stake, created_at)
        SELECT b.identifier, k.kind, p.signed_stake, p.total_stake, p.quorum_reached_at - k.before_ * interval '1 s'
        FROM history_batch hb JOIN monitoring_batch b ON b.identifier = hb.identifier
        JOIN monitoring_batchprogress p ON p.batch_id = b.id
        CROSS JOIN (VALUES ('quorum_reached', 0), ('at_risk', 4), ('recovered', 2)) AS k(kind, before_)
        WHERE p.quorum_reached_at IS NOT NULL
            AND (k.kind = 'quorum_reached' OR hb.i %% {AT_RISK_EVERY} = 0)
        ORDER BY hb.i, k.before_ DESC
        """,
    ),
    (
        "signatures",
        f"""
        INSERT INTO monitoring_signature (batch_identifier, batch_merkle_root, sender_address, operator_id,
            signature_x, signature_y, status, status_reason, conflicting, source, received_at, verified_at)
        SELECT hb.identifier, hb.merkle_root, hb.sender, hp.operator_id,
            '0x' || encode(sha256(convert_to('sx' || hb.i || ':' || hp.idx, 'UTF8')), 'hex'),
            '0x' || encode(sha256(convert_to('sy' || hb.i || ':' || hp.idx, 'UTF8')), 'hex'),
            'verified', '', hb.i %% {CONFLICT_EVERY} = 0 AND hp.idx = 1, '10.0.' || (hp.idx / 250) || '.'
                || (hp.idx %% 250 + 1),
            hb.seen + (1 + hp.idx %% 5) * interval '1 second', hb.seen + (2 + hp.idx %% 5) * interval '1 second'
        FROM history_batch hb JOIN history_pattern hp ON hp.pattern = hb.pattern
        WHERE hb.seen >= %(window_start)s AND hb.status <> 'orphaned'
            AND NOT (hb.i > %(n)s - %(lagging)s AND hp.idx = %(ops)s - 1)
            AND NOT (hb.i > %(n)s - {REAL_PENDING_BATCHES} AND hp.idx < {REAL_PENDING_SIGNERS})
        ORDER BY hb.i, hp.idx
        """,
    ),
    (
        "signatures (forged, conflicting)",
        f"""
        INSERT INTO monitoring_signature (batch_identifier, batch_merkle_root, sender_address, operator_id,
            signature_x, signature_y, status, status_reason, conflicting, source, received_at, verified_at)
        SELECT hb.identifier, hb.merkle_root, hb.sender, o.operator_id,
            '0x' || encode(sha256(convert_to('fx' || hb.i, 'UTF8')), 'hex'),
            '0x' || encode(sha256(convert_to('fy' || hb.i, 'UTF8')), 'hex'),
            CASE WHEN hb.i %% {FORGERY_EVERY} = 0 THEN 'invalid' ELSE 'verified' END,
            CASE WHEN hb.i %% {FORGERY_EVERY} = 0 THEN 'BLS signature does not verify against the operator''s key'
                ELSE '' END,
            hb.i %% {CONFLICT_EVERY} = 0,
            CASE WHEN hb.i %% {FORGERY_EVERY} = 0 THEN '198.51.100.' || (hb.i %% 200) ELSE '10.0.0.2' END,
            hb.seen + interval '3 seconds', hb.seen + interval '4 seconds'
        FROM history_batch hb JOIN history_operator h ON h.idx = 1
        JOIN monitoring_operator o ON o.operator_id = h.operator_id
        WHERE hb.seen >= %(window_start)s AND hb.status <> 'orphaned'
            AND (hb.i %% {FORGERY_EVERY} = 0 OR hb.i %% {CONFLICT_EVERY} = 0)
        """,
    ),
    (
        "aggregator boots",
        f"""
        INSERT INTO recovery_aggregatorboot (boot_id, url, first_seen_at, last_seen_at)
        SELECT 'boot-' || k, 'http://aggregator.example:8090',
            %(now)s - (%(n)s * %(iv)s) * interval '1 second' + k * interval '{BOOT_EVERY.total_seconds()} s',
            least(%(now)s, %(now)s - (%(n)s * %(iv)s) * interval '1 second'
                + (k + 1) * interval '{BOOT_EVERY.total_seconds()} s')
        FROM generate_series(0, floor(%(n)s * %(iv)s / {BOOT_EVERY.total_seconds()})::int) k
        """,
    ),
    (
        "forward tasks",
        """
        INSERT INTO recovery_recoverytask (kind, subject, status, attempts, next_attempt_at, lease_until, leased_by,
            last_error, requested_by, reason, result, created_at, updated_at, finished_at, run_id)
        SELECT 'forward', s.batch_identifier || ':' || min(s.id), 'done', 1, min(s.verified_at), NULL, '', '',
            'system', count(*) || ' verified', jsonb_build_object('sent', count(*)), min(s.verified_at),
            max(s.verified_at) + interval '50 ms', max(s.verified_at) + interval '50 ms', NULL
        FROM monitoring_signature s WHERE s.status = 'verified' GROUP BY s.batch_identifier ORDER BY min(s.id)
        """,
    ),
    (
        "deliveries",
        """
        INSERT INTO recovery_signaturedelivery (signature_id, boot_id, batch_identifier, answer, delivered_at)
        SELECT s.id, (SELECT boot_id FROM recovery_aggregatorboot WHERE first_seen_at <= s.verified_at
                      ORDER BY first_seen_at DESC LIMIT 1),
            s.batch_identifier, 'accepted', s.verified_at + interval '50 ms'
        FROM monitoring_signature s WHERE s.status = 'verified' ORDER BY s.id
        """,
    ),
    (
        "replay tasks",
        """
        INSERT INTO recovery_recoverytask (kind, subject, status, attempts, next_attempt_at, lease_until, leased_by,
            last_error, requested_by, reason, result, created_at, updated_at, finished_at, run_id)
        SELECT 'replay', hb.identifier, 'done', 1, a.first_seen_at, NULL, '', '', 'system',
            'aggregator restarted', '{"delivered": 60}', a.first_seen_at, a.first_seen_at + interval '2 s',
            a.first_seen_at + interval '2 s', NULL
        FROM recovery_aggregatorboot a
        JOIN history_batch hb ON hb.seen BETWEEN a.first_seen_at - interval '60 s' AND a.first_seen_at
        WHERE a.first_seen_at >= %(window_start)s
        """,
    ),
    (
        "liveness",
        """
        INSERT INTO monitoring_operatorliveness (operator_id, state, since, last_probe_at, last_seen_at, node_version,
            last_error, consecutive_failures)
        SELECT operator_id, CASE WHEN idx = %(ops)s - 1 THEN 'down' ELSE 'up' END,
            %(now)s - interval '1 hour', %(now)s, %(now)s, 'aligned-operator/0.15', '',
            CASE WHEN idx = %(ops)s - 1 THEN 7 ELSE 0 END
        FROM history_operator
        """,
    ),
    (
        "downtime windows",
        f"""
        INSERT INTO monitoring_operatorstatechange (operator_id, state, since, until, reason)
        SELECT h.operator_id, w.state,
            start_ + w.after_ * interval '{DOWNTIME.total_seconds()} s',
            start_ + (w.after_ + 1) * interval '{DOWNTIME.total_seconds()} s',
            CASE WHEN w.state = 'down' THEN 'probe failed 3 times' ELSE 'probe answered' END
        FROM history_operator h
        CROSS JOIN LATERAL generate_series(
            %(now)s - (%(n)s * %(iv)s) * interval '1 second' + h.idx * interval '41 minutes',
            %(now)s - interval '1 day', interval '{DOWN_EVERY.total_seconds()} s') start_
        CROSS JOIN (VALUES ('down', 0), ('up', 1)) AS w(state, after_)
        ORDER BY 3
        """,
    ),
    (
        "alerts",
        f"""
        INSERT INTO monitoring_alert (kind, subject, severity, state, summary, details, opened_at, resolved_at,
            resolution, acknowledged_at, acknowledged_by)
        SELECT 'operator_down', operator_id, 'warning', 'resolved', 'operator ' || left(operator_id, 10) || ' is down',
            '{{"stake_share": "0.012"}}'::jsonb, since, until, 'operator is up again', NULL::timestamptz, ''
        FROM monitoring_operatorstatechange WHERE state = 'down'
        UNION ALL
        SELECT 'batch_at_risk', identifier, 'warning', 'resolved', 'batch ' || left(identifier, 10) || ' at risk',
            '{{"signed": "0.41"}}'::jsonb, seen + interval '3 s', seen + interval '5 s', 'quorum reached',
            NULL::timestamptz, ''
        FROM history_batch WHERE i %% {AT_RISK_EVERY} = 0 AND status = 'verified'
        UNION ALL
        SELECT 'invalid_signature', identifier, 'info', 'resolved', 'forged signature refused',
            '{{"source": "198.51.100.7"}}'::jsonb, seen + interval '4 s', seen + interval '40 s', 'batch verified',
            NULL::timestamptz, ''
        FROM history_batch WHERE i %% {FORGERY_EVERY} = 0 AND status = 'verified'
        ORDER BY 7
        """,
    ),
    (
        "webhook endpoints",
        """
        INSERT INTO monitoring_webhookendpoint (name, url, active, created_by, created_at)
        VALUES ('pager', 'https://pager.example/hook', true, 'ops', %(now)s - interval '400 days'),
            ('chat', 'https://chat.example/hook', true, 'ops', %(now)s - interval '400 days')
        """,
    ),
    (
        "webhook deliveries",
        """
        INSERT INTO monitoring_webhookdelivery (endpoint_id, alert_id, event, status, attempts, next_attempt_at,
            lease_until, last_status_code, last_error, created_at, delivered_at)
        SELECT e.id, a.id, ev.event, 'delivered', 1, ev.at_, NULL, 200, '', ev.at_, ev.at_ + interval '80 ms'
        FROM monitoring_alert a CROSS JOIN monitoring_webhookendpoint e
        CROSS JOIN LATERAL (VALUES ('firing', a.opened_at), ('resolved', a.resolved_at)) AS ev(event, at_)
        ORDER BY ev.at_
        """,
    ),
    (
        "webhook attempts",
        """
        INSERT INTO monitoring_webhookattempt (delivery_id, status_code, error, duration_ms, attempted_at)
        SELECT id, 200, '', 80, created_at FROM monitoring_webhookdelivery
        WHERE created_at >= %(window_start)s ORDER BY id
        """,
    ),
    (
        "catch-up tasks",
        """
        INSERT INTO recovery_recoverytask (kind, subject, status, attempts, next_attempt_at, lease_until, leased_by,
            last_error, requested_by, reason, result, created_at, updated_at, finished_at, run_id)
        SELECT 'catchup', operator_id, 'done', 2, until, NULL, '', '', 'system',
            'lacks its signature on pending batches older than 30s',
            '{"requests": 1, "accepted": 19, "skipped": 0, "refused": 0, "owed": 0, "outstanding": 0}',
            until, until + interval '30 s', until + interval '30 s', NULL
        FROM monitoring_operatorstatechange WHERE state = 'up' AND until >= %(window_start)s
        """,
    ),
    (
        "catch-up asks",
        """
        INSERT INTO recovery_catchupask (operator_id, batch_identifier, asks, first_asked_at, last_asked_at)
        SELECT DISTINCT ON (c.operator_id, hb.identifier) c.operator_id, hb.identifier, 1, c.until, c.until
        FROM monitoring_operatorstatechange c
        JOIN history_batch hb ON hb.seen BETWEEN c.since AND c.until
        WHERE c.state = 'down' AND hb.status = 'verified' AND c.until >= %(window_start)s
        """,
    ),
    (
        "ingest cursor",
        """
        INSERT INTO monitoring_ingestcursor (chain_id, address, block_number, block_hash, genesis_hash, updated_at)
        SELECT %(chain)s, %(manager)s, max(block) + 2,
            '0x' || encode(sha256(convert_to('blk' || (max(block) + 2), 'UTF8')), 'hex'),
            '0x' || encode(sha256(convert_to('genesis', 'UTF8')), 'hex'), %(now)s
        FROM history_batch
        """,
    ),
]

_REAL_PENDING = """
INSERT INTO monitoring_signature (batch_identifier, batch_merkle_root, sender_address, operator_id, signature_x,
    signature_y, status, status_reason, conflicting, source, received_at, verified_at)
SELECT r.identifier, b.merkle_root, b.sender, h.operator_id, r.x, r.y, 'pending', '', false,
    '10.0.0.' || (r.idx + 1), %(real_now)s, NULL
FROM history_real r JOIN history_operator h ON h.idx = r.idx JOIN monitoring_batch b ON b.identifier = r.identifier
"""
