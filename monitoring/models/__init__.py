"""The ledger: what the chain said, decoded, in Postgres."""

from __future__ import annotations

from monitoring.models.alerts import (
    Alert,
    AlertKind,
    AlertSeverity,
    AlertState,
    WebhookAttempt,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookEvent,
)
from monitoring.models.batches import Batch, BatchStatus
from monitoring.models.chain import Block, ChainEvent, IngestCursor, IngestIncident, IngestIncidentKind
from monitoring.models.liveness import OperatorLiveness, OperatorState, OperatorStateChange
from monitoring.models.operators import Operator, OperatorStake
from monitoring.models.progress import BatchProgress, BatchProgressChange, BatchProgressChangeKind
from monitoring.models.signatures import BatchRefusal, Signature, SignatureStatus

__all__ = [
    "Alert",
    "AlertKind",
    "AlertSeverity",
    "AlertState",
    "Batch",
    "BatchProgress",
    "BatchProgressChange",
    "BatchProgressChangeKind",
    "BatchRefusal",
    "BatchStatus",
    "Block",
    "ChainEvent",
    "IngestCursor",
    "IngestIncident",
    "IngestIncidentKind",
    "Operator",
    "OperatorLiveness",
    "OperatorStake",
    "OperatorState",
    "OperatorStateChange",
    "Signature",
    "SignatureStatus",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookDeliveryStatus",
    "WebhookEndpoint",
    "WebhookEvent",
]
