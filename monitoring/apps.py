from __future__ import annotations

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Network monitoring"

    def ready(self) -> None:
        # Each stage built on the ledger forgets its part of a replaced chain (see ledger.chain_replaced).
        from monitoring.alerts.services import alerts_forget_chain
        from monitoring.ingest.ledger import chain_replaced
        from monitoring.intake.services import intake_forget_chain
        from monitoring.liveness.services import liveness_forget_chain

        chain_replaced.connect(intake_forget_chain, dispatch_uid="intake_forget_chain")
        chain_replaced.connect(liveness_forget_chain, dispatch_uid="liveness_forget_chain")
        chain_replaced.connect(alerts_forget_chain, dispatch_uid="alerts_forget_chain")

        # The live dashboard hears every change the stages below it announce (controlplane.changes).
        from monitoring.live.notify import live_receivers_connect

        live_receivers_connect()
