from __future__ import annotations

from django.apps import AppConfig


class RecoveryConfig(AppConfig):
    name = "recovery"
    verbose_name = "Recovery"

    def ready(self) -> None:
        from monitoring.ingest.ledger import chain_replaced
        from recovery.services.reset import recovery_forget_chain

        chain_replaced.connect(recovery_forget_chain, dispatch_uid="recovery_forget_chain")
