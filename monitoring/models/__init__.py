"""The ledger: what the chain said, decoded, in Postgres."""

from __future__ import annotations

from monitoring.models.batches import Batch, BatchStatus
from monitoring.models.chain import Block, ChainEvent, IngestCursor, IngestIncident, IngestIncidentKind
from monitoring.models.operators import Operator, OperatorStake

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
