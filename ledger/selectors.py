"""Selectors: every read of the ledger that views, the API and jobs share (services write, selectors read)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.db import connection
from django.db.models import QuerySet, Sum

from controlplane.rowcounts import rowcounts
from ledger.models import Batch, BatchStatus, IngestCursor, IngestIncident, Operator, OperatorStake

QUORUM = 0
STAKE_HISTORY_LIMIT = 100
SHARE_PLACES = Decimal("0.000001")
BYTES32 = re.compile(r"^0x[0-9a-fA-F]{64}$")


def bytes32_normalize(*, value: str) -> str | None:
    """``value`` as lowercase 0x + 64 hex, or None when it is not a bytes32 in hex."""
    return value.lower() if BYTES32.match(value) else None


# --- Batches -----------------------------------------------------------------------------------


def batch_list() -> QuerySet[Batch]:
    """Every batch, newest first (uses the ``batch_newest_first`` index)."""
    return Batch.objects.select_related("progress").order_by("-created_block", "-id")


def batch_count_known(*, filters: Mapping[str, str]) -> int | None:
    """How many batches a list filtered by ``filters`` holds, when the counts kept by the writes know it (no
    filter, or only a status); None when it must be counted."""
    counts = rowcounts(prefix="batches")
    if not filters:
        return sum(counts.values())
    if set(filters) == {"status"} and filters["status"] in BatchStatus.values:
        return counts.get(filters["status"], 0)
    return None


def batch_get(*, identifier: str) -> Batch | None:
    return Batch.objects.select_related("progress").filter(identifier=identifier.lower()).first()


# --- Operators and stake -----------------------------------------------------------------------


def operator_list() -> QuerySet[Operator]:
    """Every operator known from registry events, biggest stake first."""
    return Operator.objects.order_by("-current_stake", "operator_id")


def operator_get(*, operator_id: str) -> Operator | None:
    return Operator.objects.filter(operator_id=operator_id.lower()).first()


def operator_total_current_stake() -> Decimal:
    """The current stake of all registered operators together (the denominator of a stake share)."""
    total = Operator.objects.filter(registered=True).aggregate(total=Sum("current_stake"))["total"]
    return Decimal(total or 0)


def operator_stake_share(*, operator: Operator, total: Decimal) -> Decimal | None:
    """The operator's share of the registered stake, rounded to 6 places; None when there is no stake at all.

    An operator that is not registered holds no share, whatever its last stake update said.
    """
    if total <= 0:
        return None
    if not operator.registered:
        return Decimal(0).quantize(SHARE_PLACES)
    return (Decimal(operator.current_stake) / total).quantize(SHARE_PLACES, rounding=ROUND_HALF_UP)


def operator_stake_history(*, operator_id: str, limit: int = STAKE_HISTORY_LIMIT) -> list[OperatorStake]:
    """The last ``limit`` live stake updates of one operator, newest first."""
    return list(
        OperatorStake.objects.filter(
            operator_id=operator_id.lower(), quorum_number=QUORUM, removed=False
        ).order_by("-block_number", "-log_index")[:limit]
    )


# The stake rule, written once: an operator's stake at a block is its last live (not reorged-out) stake update of
# quorum 0 at or before that block, by (block, log index); none means 0. Every stake-at-taskCreatedBlock figure
# (quorum progress, the intake's check, catch-up's owed batches, the dashboard) is built from these two.


def stake_at_block_sql(*, operator: str, block: str) -> str:
    """SQL for one operator's stake at a block, as a scalar subquery (NULL for none); both are SQL expressions."""
    return f"""(SELECT st.stake FROM monitoring_operatorstake st
        WHERE st.operator_id = {operator} AND NOT st.removed AND st.quorum_number = {QUORUM}
            AND st.block_number <= {block}
        ORDER BY st.block_number DESC, st.log_index DESC LIMIT 1)"""


def stakes_at_block_sql(*, block: str) -> str:
    """SQL for every operator's (operator_id, stake) at a block (an SQL expression), zero stakes included."""
    return f"""SELECT DISTINCT ON (st.operator_id) st.operator_id, st.stake
        FROM monitoring_operatorstake st
        WHERE NOT st.removed AND st.quorum_number = {QUORUM} AND st.block_number <= {block}
        ORDER BY st.operator_id, st.block_number DESC, st.log_index DESC"""


def operator_stake_at_block(*, operator_id: str, block_number: int) -> Decimal:
    """The operator's stake at ``block_number``: its last live stake update at or before it, else 0."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {stake_at_block_sql(operator='%s', block='%s')}", [operator_id.lower(), block_number]
        )
        stake = cursor.fetchone()[0]
    return Decimal(stake) if stake is not None else Decimal(0)


def operator_stakes_at_block(*, block_number: int) -> dict[str, Decimal]:
    """Every operator's stake at ``block_number`` (its last live update at or before it), zero stakes left out."""
    return operator_stakes_at_blocks(block_numbers=[block_number])[block_number]


def operator_stakes_at_blocks(*, block_numbers: Iterable[int]) -> dict[int, dict[str, Decimal]]:
    """``operator_stakes_at_block`` for each of several blocks, in one query."""
    blocks = sorted(set(block_numbers))
    stakes: dict[int, dict[str, Decimal]] = {block: {} for block in blocks}
    if not blocks:
        return stakes
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT b.block, s.operator_id, s.stake FROM unnest(%s::bigint[]) AS b(block)
            CROSS JOIN LATERAL ({stakes_at_block_sql(block="b.block")}) s""",
            [blocks],
        )
        for block, operator_id, stake in cursor.fetchall():
            if stake > 0:
                stakes[int(block)][operator_id] = Decimal(stake)
    return stakes


def total_stake_at_block(*, block_number: int) -> Decimal:
    """The quorum's total stake at ``block_number``: each operator's stake then, summed (one query)."""
    return sum(operator_stakes_at_block(block_number=block_number).values(), Decimal(0))


def operators_registered_at_block(*, block_number: int) -> set[str]:
    """Operator ids registered (in quorum 0) as of the end of ``block_number``: each one's last live
    OperatorRegistered/OperatorDeregistered event at or before it, by (block, log index), is a registration."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT subject FROM (
                SELECT DISTINCT ON (subject) subject, name FROM monitoring_chainevent
                WHERE name IN ('OperatorRegistered', 'OperatorDeregistered') AND NOT removed AND block_number <= %s
                ORDER BY subject, block_number DESC, log_index DESC
            ) last WHERE name = 'OperatorRegistered'""",
            [block_number],
        )
        return {row[0] for row in cursor.fetchall()}


# --- Ingest ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestStatus:
    cursors: list[IngestCursor]
    incidents: list[IngestIncident]

    @property
    def last_incident(self) -> IngestIncident | None:
        return self.incidents[0] if self.incidents else None


def ingest_status(*, incidents: int = 10) -> IngestStatus:
    """Where each contract's ingest cursor stands, and the latest ingest incidents (newest first)."""
    return IngestStatus(
        cursors=list(IngestCursor.objects.order_by("chain_id", "address")),
        incidents=list(IngestIncident.objects.order_by("-created_at", "-id")[:incidents]),
    )
