"""The ledger: what the chain said, decoded, in Postgres (batches, operators and their stake history)."""

from __future__ import annotations

from ledger.models.batches import Batch, BatchStatus
from ledger.models.chain import Block, ChainEvent, IngestCursor, IngestIncident, IngestIncidentKind
from ledger.models.operators import Operator, OperatorStake

__all__ = [
    "Batch",
    "BatchStatus",
    "Block",
    "ChainEvent",
    "IngestCursor",
    "IngestIncident",
    "IngestIncidentKind",
    "Operator",
    "OperatorStake",
]
