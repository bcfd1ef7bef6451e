from __future__ import annotations

from django.apps import AppConfig


class RecoveryConfig(AppConfig):
    name = "recovery"
    verbose_name = "Recovery"

    def ready(self) -> None:
        from ledger.ingest.ledger import chain_replaced
        from recovery.services.reset import recovery_forget_chain

        chain_replaced.connect(recovery_forget_chain, dispatch_uid="recovery_forget_chain")

        # Each signature the verifier finds valid gets a forward task, in the verifier's transaction.
        from controlplane.changes import change_listen, signatures_checked
        from recovery.services.forwarding import forwarding_request_verified

        change_listen(
            signatures_checked, forwarding_request_verified, uid="recovery.forwarding_request_verified"
        )
