from __future__ import annotations

from django.apps import AppConfig


class IntakeConfig(AppConfig):
    """Operator signatures: stored before they are acknowledged, then verified in aggregate."""

    name = "intake"
    verbose_name = "Signature intake"

    def ready(self) -> None:
        # Each stage built on the ledger forgets its part of a replaced chain (see ledger.chain_replaced).
        from intake.services import intake_forget_chain
        from ledger.ingest.ledger import chain_replaced

        chain_replaced.connect(intake_forget_chain, dispatch_uid="intake_forget_chain")
