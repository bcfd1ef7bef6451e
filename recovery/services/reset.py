"""Recovery's part of a chain replacement (``ledger.chain_replaced``): its work was about the old chain."""

from __future__ import annotations

from recovery.models import AggregatorBoot, CatchupAsk, RecoveryTask, SignatureDelivery


def recovery_forget_chain(**_: object) -> None:
    """Tasks, deliveries, asks and aggregator boots of the old chain go; staff runs stay (they are the audit)."""
    SignatureDelivery.objects.all().delete()
    RecoveryTask.objects.all().delete()
    CatchupAsk.objects.all().delete()
    AggregatorBoot.objects.all().delete()
