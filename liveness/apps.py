from __future__ import annotations

from django.apps import AppConfig


class LivenessConfig(AppConfig):
    """Whether each operator is up, from probe answers and verified signatures only."""

    name = "liveness"
    verbose_name = "Operator liveness"

    def ready(self) -> None:
        from ledger.ingest.ledger import chain_replaced
        from liveness.services import liveness_forget_chain

        chain_replaced.connect(liveness_forget_chain, dispatch_uid="liveness_forget_chain")
