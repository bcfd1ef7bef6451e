"""Ledger services: write event rows and the state decoded from them; undo both on a reorg.

Writes are set-based (one INSERT ... SELECT FROM unnest(...) per table and chunk) so backfill runs near the
speed of a raw COPY. Every write is idempotent: re-ingesting a range changes nothing, and a log that comes back
after being orphaned is revived rather than duplicated.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.dispatch import Signal
from django.utils import timezone

from chain import RawLog
from chain.abi import NAMES_BY_TOPIC, DecodeError, batch_identifier, decode_log, operator_id_of
from controlplane.changes import change_announce, ledger_applied
from ledger.models import (
    Batch,
    BatchStatus,
    Block,
    ChainEvent,
    IngestCursor,
    IngestIncident,
    IngestIncidentKind,
    Operator,
    OperatorStake,
)

logger = logging.getLogger("ledger.ingest")

BATCH_EVENTS = frozenset({"NewBatchV3", "NewBatchV2", "BatchVerified"})
REGISTRY_EVENTS = frozenset(
    {
        "NewPubkeyRegistration",
        "OperatorRegistered",
        "OperatorDeregistered",
        "OperatorStakeUpdate",
        "OperatorSocketUpdate",
    }
)


@dataclass
class EventRow:
    log: RawLog
    name: str
    subject: str
    args: dict[str, Any]


@dataclass
class ApplySummary:
    events: int = 0
    batches_created: int = 0
    batches_verified: int = 0
    registry_events: int = 0
    undecodable: int = 0


def _subject(name: str, args: dict[str, Any]) -> str:
    if name in BATCH_EVENTS:
        return batch_identifier(args["batchMerkleRoot"], args["senderAddress"])
    if name == "NewPubkeyRegistration":
        return operator_id_of(args["pubkeyG1"])
    return str(args["operatorId"])


UNDECODABLE = "undecodable"


def decode_logs(logs: Iterable[RawLog]) -> tuple[list[EventRow], int]:
    """Decode what we ingest. A malformed log of a known topic (anyone can emit one) becomes an ``undecodable``
    event row that says why, in its place: recorded, applied to nothing, and never in the way of the next log."""
    rows: list[EventRow] = []
    undecodable = 0
    for log in logs:
        try:
            decoded = decode_log(log.topics, log.data)
            if decoded is None:
                continue
            row = EventRow(
                log=log, name=decoded.name, subject=_subject(decoded.name, decoded.args), args=decoded.args
            )
        except (DecodeError, ValueError, KeyError, TypeError) as exc:
            undecodable += 1
            name = NAMES_BY_TOPIC.get(log.topics[0].lower(), "") if log.topics else ""
            reason = str(exc)[:500]
            logger.error(
                "undecodable %s log %s#%d in block %d: %s (recorded, skipped)",
                name or "unknown",
                log.transaction_hash,
                log.log_index,
                log.block_number,
                reason,
            )
            row = EventRow(log=log, name=UNDECODABLE, subject="", args={"event": name, "reason": reason})
        unsafe = row.args.get("_unsafe")
        if unsafe:
            logger.warning(
                "%s log %s#%d in block %d carries unsafe strings, stored escaped: %s",
                row.name,
                log.transaction_hash,
                log.log_index,
                log.block_number,
                unsafe,
            )
        rows.append(row)
    return rows, undecodable


# Rows arrive by COPY into a per-connection temp table, then move with one statement: binding 10,000-element
# parameters client-side costs more than the whole database write. Batches are derived from the newly inserted
# NewBatch rows inside that statement, so the bulk of a backfill never round-trips through Python twice.
_STAGE_TABLE = """
CREATE TEMP TABLE IF NOT EXISTS ingest_stage_events (
    block_number bigint, block_hash text, log_index int, transaction_hash text, transaction_index int,
    address text, topic0 text, name text, subject text, args jsonb,
    merkle_root text, sender text, task_created_block bigint, data_pointer text, fee_limit numeric)
"""
_STAGE_COLUMNS = (
    "block_number, block_hash, log_index, transaction_hash, transaction_index, address, topic0, name, subject, args, "
    "merkle_root, sender, task_created_block, data_pointer, fee_limit"
)

_INSERT_EVENTS_AND_BATCHES = """
WITH inserted AS (
    INSERT INTO monitoring_chainevent (chain_id, block_number, block_hash, log_index, transaction_hash,
        transaction_index, address, topic0, name, subject, args, removed, ingested_at)
    SELECT %s, block_number, block_hash, log_index, transaction_hash, transaction_index, address, topic0, name,
        subject, COALESCE(args, CASE name
            WHEN 'NewBatchV3' THEN jsonb_build_object('batchMerkleRoot', merkle_root, 'senderAddress', sender,
                'taskCreatedBlock', task_created_block, 'batchDataPointer', data_pointer,
                'respondToTaskFeeLimit', fee_limit::text)
            ELSE jsonb_build_object('batchMerkleRoot', merkle_root, 'senderAddress', sender,
                'taskCreatedBlock', task_created_block, 'batchDataPointer', data_pointer) END), false, now()
    FROM ingest_stage_events
    ON CONFLICT (chain_id, block_hash, log_index) DO UPDATE SET removed = false, removed_at = NULL
        WHERE monitoring_chainevent.removed
    RETURNING id, block_hash, log_index, name
), batches AS (
    INSERT INTO monitoring_batch (identifier, merkle_root, sender, task_created_block, data_pointer, fee_limit,
        event_version, status, created_block, created_tx, verified_block, verified_tx, first_seen_at, updated_at)
    SELECT DISTINCT ON (s.subject) s.subject, s.merkle_root, s.sender, s.task_created_block, s.data_pointer,
        s.fee_limit, CASE s.name WHEN 'NewBatchV3' THEN 3 ELSE 2 END, 'pending', s.block_number,
        s.transaction_hash, NULL, '', now(), now()
    FROM inserted i JOIN ingest_stage_events s USING (block_hash, log_index)
    WHERE s.name IN ('NewBatchV3', 'NewBatchV2')
    ORDER BY s.subject, s.block_number DESC, s.log_index DESC
    ON CONFLICT (identifier) DO UPDATE SET
        merkle_root = EXCLUDED.merkle_root, sender = EXCLUDED.sender,
        task_created_block = EXCLUDED.task_created_block, data_pointer = EXCLUDED.data_pointer,
        fee_limit = EXCLUDED.fee_limit, event_version = EXCLUDED.event_version,
        created_block = EXCLUDED.created_block, created_tx = EXCLUDED.created_tx,
        status = CASE WHEN monitoring_batch.status = 'orphaned' THEN 'pending' ELSE monitoring_batch.status END,
        updated_at = now()
    RETURNING 1
)
SELECT id, block_hash, log_index FROM inserted WHERE name NOT IN ('NewBatchV3', 'NewBatchV2')
UNION ALL SELECT NULL, '#new-batch-events',
    (SELECT count(*) FROM inserted WHERE name IN ('NewBatchV3', 'NewBatchV2'))::int
UNION ALL SELECT NULL, '#batches', (SELECT count(*) FROM batches)::int
"""


_NO_BATCH = (None, None, None, None, None)
# A NewBatch row's args, when they are exactly these keys, are rebuilt in SQL from its typed columns (the
# statement above) instead of being sent as JSON: encoding and parsing them was a fifth of a backfill's CPU.
_PLAIN_ARGS = {
    "NewBatchV3": frozenset(
        {"batchMerkleRoot", "senderAddress", "taskCreatedBlock", "batchDataPointer", "respondToTaskFeeLimit"}
    ),
    "NewBatchV2": frozenset({"batchMerkleRoot", "senderAddress", "taskCreatedBlock", "batchDataPointer"}),
}


def _batch_columns(r: EventRow) -> tuple[Any, ...]:
    if r.name not in ("NewBatchV3", "NewBatchV2"):
        return _NO_BATCH
    a = r.args
    fee = a.get("respondToTaskFeeLimit")
    return (a["batchMerkleRoot"], a["senderAddress"], a["taskCreatedBlock"], a["batchDataPointer"], fee)


@dataclass
class InsertResult:
    # Ids of new or revived events other than NewBatch ones (those are applied in SQL already).
    other_ids: dict[tuple[str, int], int]
    new_batch_events: int
    batches_upserted: int


def _stage_args(r: EventRow) -> str | None:
    """The args as JSON, or None for a NewBatch row whose args the insert rebuilds from its columns."""
    plain = _PLAIN_ARGS.get(r.name)
    if plain is not None and r.args.keys() == plain:
        return None
    return json.dumps(r.args)


def stage_rows(rows: Sequence[EventRow]) -> list[tuple[Any, ...]]:
    """The COPY tuples for ``rows``: pure Python, so the ingester builds them on its decode thread."""
    return [
        (
            r.log.block_number,
            r.log.block_hash,
            r.log.log_index,
            r.log.transaction_hash,
            r.log.transaction_index,
            r.log.address,
            r.log.topics[0],
            r.name,
            r.subject,
            _stage_args(r),
            *_batch_columns(r),
        )
        for r in rows
    ]


def events_insert(
    *, chain_id: int, rows: Sequence[EventRow], staged: Sequence[tuple[Any, ...]] | None = None
) -> InsertResult:
    """Insert event rows (idempotently) and upsert the batches their new NewBatch rows create."""
    if not rows:
        return InsertResult(other_ids={}, new_batch_events=0, batches_upserted=0)
    with connection.cursor() as cursor:
        # One round trip for both: the ingester writes while its next range is fetched, so each one shows.
        cursor.execute(_STAGE_TABLE + "; TRUNCATE ingest_stage_events")
        with cursor.copy(f"COPY ingest_stage_events ({_STAGE_COLUMNS}) FROM STDIN") as copy:
            for row in staged if staged is not None else stage_rows(rows):
                copy.write_row(row)
        cursor.execute(_INSERT_EVENTS_AND_BATCHES, [chain_id])
        result = InsertResult(other_ids={}, new_batch_events=0, batches_upserted=0)
        for event_id, block_hash, log_index in cursor.fetchall():
            if event_id is not None:
                result.other_ids[(block_hash, log_index)] = event_id
            elif block_hash == "#new-batch-events":
                result.new_batch_events = log_index
            else:
                result.batches_upserted = log_index
        return result


_MARK_VERIFIED = """
UPDATE monitoring_batch AS b SET status = 'verified', verified_block = t.block_number, verified_tx = t.tx,
    updated_at = now()
FROM unnest(%s::text[], %s::bigint[], %s::text[]) AS t(identifier, block_number, tx)
WHERE b.identifier = t.identifier
RETURNING b.identifier
"""


def batches_mark_verified(*, rows: Sequence[EventRow]) -> int:
    """Mark the batches of new BatchVerified rows verified; returns how many were found."""
    verified = [r for r in rows if r.name == "BatchVerified"]
    if not verified:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(
            _MARK_VERIFIED,
            [
                [r.subject for r in verified],
                [r.log.block_number for r in verified],
                [r.log.transaction_hash for r in verified],
            ],
        )
        found = {row[0] for row in cursor.fetchall()}
    for r in verified:
        if r.subject not in found:
            # The batch was created before START_BLOCK: nothing to mark, but say so.
            logger.warning("BatchVerified for unknown batch %s in block %d", r.subject, r.log.block_number)
    return len(found)


# Every column of an operator but its keys is what registry events say: an upsert rewrites them all.
OPERATOR_FIELDS = tuple(f.name for f in Operator._meta.concrete_fields if f.name not in ("id", "operator_id"))
STAKE_FIELDS = ("operator_id", "quorum_number", "stake", "block_number", "log_index", "removed")


def _operator_event_touches(*, name: str, args: dict[str, Any]) -> bool:
    # A stake update of another quorum is history only (a stake row), not the operator's quorum-0 stake.
    return name != "OperatorStakeUpdate" or int(args["quorumNumber"]) == 0


def _operator_event_apply(*, operator: Operator, name: str, args: dict[str, Any], block_number: int) -> None:
    """What one registry event that touches the operator (``_operator_event_touches``) does to it, in memory."""
    if name == "NewPubkeyRegistration":
        operator.address = args["operator"]
        operator.pubkey_g1 = args["pubkeyG1"]
        operator.pubkey_g2 = args["pubkeyG2"]
    elif name == "OperatorRegistered":
        operator.address = args["operator"]
        operator.registered = True
        operator.registered_block = block_number
        operator.deregistered_block = None
    elif name == "OperatorDeregistered":
        operator.address = args["operator"]
        operator.registered = False
        operator.deregistered_block = block_number
    elif name == "OperatorSocketUpdate":
        operator.socket = args["socket"]
    elif name == "OperatorStakeUpdate":
        operator.current_stake = Decimal(args["stake"])


def _operators_save(operators: Iterable[Operator]) -> None:
    """Upsert operators (new or loaded and changed) in one statement, registry fields only."""
    Operator.objects.bulk_create(
        list(operators),
        update_conflicts=True,
        unique_fields=["operator_id"],
        update_fields=list(OPERATOR_FIELDS),
    )


def operators_apply(*, rows: Sequence[EventRow], event_ids: dict[tuple[str, int], int]) -> int:
    """Apply registry events in log order; stake updates also become stake-history rows.

    Set-based: the chunk's operators are read (and locked) at once, changed in memory event by event, and written
    back in one upsert, with the stake rows in another, instead of a few statements per event.
    """
    registry = [r for r in rows if r.name in REGISTRY_EVENTS]
    if not registry:
        return 0
    subjects = sorted({r.subject for r in registry})
    operators = {
        o.operator_id: o
        for o in Operator.objects.select_for_update().filter(operator_id__in=subjects).order_by("operator_id")
    }
    touched: dict[str, Operator] = {}
    stakes = []
    for r in registry:
        if _operator_event_touches(name=r.name, args=r.args):
            operator = touched.get(r.subject) or operators.get(r.subject)
            if operator is None:
                operator = Operator(operator_id=r.subject, address="")
            touched[r.subject] = operator
            _operator_event_apply(
                operator=operator, name=r.name, args=r.args, block_number=r.log.block_number
            )
        if r.name == "OperatorStakeUpdate":
            stakes.append(
                OperatorStake(
                    event_id=event_ids[(r.log.block_hash, r.log.log_index)],
                    operator_id=r.subject,
                    quorum_number=int(r.args["quorumNumber"]),
                    stake=Decimal(r.args["stake"]),
                    block_number=r.log.block_number,
                    log_index=r.log.log_index,
                    removed=False,
                )
            )
    if touched:
        _operators_save(touched.values())
    if stakes:
        OperatorStake.objects.bulk_create(
            stakes, update_conflicts=True, unique_fields=["event"], update_fields=list(STAKE_FIELDS)
        )
    return len(registry)


def ledger_apply(*, chain_id: int, logs: Sequence[RawLog]) -> ApplySummary:
    """Store the logs of one chunk and the state they imply. Call inside the chunk's transaction."""
    rows, undecodable = decode_logs(logs)
    return ledger_apply_rows(chain_id=chain_id, rows=rows, undecodable=undecodable)


@dataclass
class PreparedChunk:
    rows: list[EventRow]
    undecodable: int
    staged: list[tuple[Any, ...]]


def chunk_prepare(logs: Sequence[RawLog]) -> PreparedChunk:
    """Everything about a chunk that needs no database: decode, subjects, COPY tuples."""
    rows, undecodable = decode_logs(logs)
    return PreparedChunk(rows=rows, undecodable=undecodable, staged=stage_rows(rows))


def ledger_apply_rows(
    *,
    chain_id: int,
    rows: Sequence[EventRow],
    undecodable: int = 0,
    staged: Sequence[tuple[Any, ...]] | None = None,
) -> ApplySummary:
    """Like ledger_apply, for rows already decoded (the ingester decodes ahead on a worker thread)."""
    inserted = events_insert(chain_id=chain_id, rows=rows, staged=staged)
    fresh = [r for r in rows if (r.log.block_hash, r.log.log_index) in inserted.other_ids]
    verified = batches_mark_verified(rows=fresh)
    registry = operators_apply(rows=fresh, event_ids=inserted.other_ids)
    change_announce(ledger_applied, rows=rows, new_batch_events=inserted.new_batch_events, fresh=fresh)
    return ApplySummary(
        events=inserted.new_batch_events + len(fresh),
        batches_created=inserted.batches_upserted,
        batches_verified=verified,
        registry_events=registry,
        undecodable=undecodable,
    )


_REMEMBER_BLOCKS = """
INSERT INTO monitoring_block (chain_id, number, hash, parent_hash, timestamp, removed, seen_at)
SELECT %s, t.number, t.hash, t.parent_hash, t.timestamp, false, now()
FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::bigint[]) AS t(number, hash, parent_hash, timestamp)
ON CONFLICT (chain_id, hash) DO NOTHING
"""


def blocks_remember(*, chain_id: int, blocks: Sequence[tuple[int, str, str, int | None]]) -> None:
    """Keep blocks (number, hash, parent hash or "", timestamp or None) that are not kept yet: one statement."""
    if not blocks:
        return
    numbers, hashes, parents, timestamps = (list(column) for column in zip(*blocks, strict=True))
    with connection.cursor() as cursor:
        cursor.execute(_REMEMBER_BLOCKS, [chain_id, numbers, hashes, parents, timestamps])


# --- Rollback ------------------------------------------------------------------------------------


def batch_rebuild(*, identifier: str) -> None:
    """Recompute one batch from its live (not removed) events."""
    live = ChainEvent.objects.filter(subject=identifier, removed=False).order_by("block_number", "log_index")
    created = [e for e in live if e.name in ("NewBatchV3", "NewBatchV2")]
    verified = [e for e in live if e.name == "BatchVerified"]
    batch = Batch.objects.filter(identifier=identifier).first()
    if batch is None:
        return
    if not created:
        batch.status = BatchStatus.ORPHANED
    else:
        event = created[-1]
        batch.task_created_block = int(event.args["taskCreatedBlock"])
        batch.data_pointer = event.args["batchDataPointer"]
        fee = event.args.get("respondToTaskFeeLimit")
        batch.fee_limit = Decimal(fee) if fee is not None else None
        batch.created_block = event.block_number
        batch.created_tx = event.transaction_hash
        batch.status = BatchStatus.PENDING
    if verified and created:
        batch.status = BatchStatus.VERIFIED
        batch.verified_block = verified[-1].block_number
        batch.verified_tx = verified[-1].transaction_hash
    else:
        batch.verified_block = None
        batch.verified_tx = ""
    batch.save()


def operator_rebuild(*, operator_id: str) -> None:
    """Recompute one operator by replaying its live registry events from scratch."""
    live = ChainEvent.objects.filter(subject=operator_id, removed=False).order_by("block_number", "log_index")
    operator = Operator.objects.select_for_update().filter(operator_id=operator_id).first()
    if operator is None:
        return
    operator.socket = ""
    operator.registered = False
    operator.registered_block = None
    operator.deregistered_block = None
    operator.current_stake = Decimal(0)
    for event in live:
        if _operator_event_touches(name=event.name, args=event.args):
            _operator_event_apply(
                operator=operator, name=event.name, args=event.args, block_number=event.block_number
            )
    operator.save()


def ledger_rollback(*, chain_id: int, address: str, above_block: int) -> list[str]:
    """Mark the contract's events above ``above_block`` removed and rebuild what they touched.

    Returns the subjects rebuilt. Call inside the transaction that also rewinds the cursor.
    """
    orphans = ChainEvent.objects.select_for_update().filter(
        chain_id=chain_id, address=address, block_number__gt=above_block, removed=False
    )
    touched = list(orphans.values_list("id", "name", "subject"))
    if not touched:
        return []
    ids = [event_id for event_id, _, _ in touched]
    ChainEvent.objects.filter(id__in=ids).update(removed=True, removed_at=timezone.now())
    OperatorStake.objects.filter(event_id__in=ids).update(removed=True)
    batches = sorted({subject for _, name, subject in touched if name in BATCH_EVENTS})
    operators = sorted({subject for _, name, subject in touched if name in REGISTRY_EVENTS})
    for identifier in batches:
        batch_rebuild(identifier=identifier)
    for operator_id in operators:
        operator_rebuild(operator_id=operator_id)
    return batches + operators


# Sent (inside the reset's transaction) when the ledger forgets a chain that was replaced. Everything built on the
# old chain (signatures, liveness, alerts, recovery work) belongs to stages above the ledger: each listens here
# and forgets its own part, so a new devnet starts clean without this stage knowing who they are.
chain_replaced = Signal()


def ledger_reset(*, chain_id: int, reason: str) -> None:
    """Forget everything ingested (events, batches, operators, stake history, blocks, cursors) and record why.

    For a ledger that follows a chain which no longer exists (a devnet restarted with a new genesis).
    """
    with transaction.atomic():
        # DELETE, not TRUNCATE: it runs inside callers' transactions (TRUNCATE refuses pending FK triggers there).
        for model in (OperatorStake, ChainEvent, Batch, Operator, Block, IngestCursor):
            model.objects.all().delete()
        IngestIncident.objects.create(chain_id=chain_id, kind=IngestIncidentKind.LEDGER_RESET, detail=reason)
        chain_replaced.send(sender=ledger_reset, chain_id=chain_id, reason=reason)
    logger.warning("ledger reset: %s", reason)
