from __future__ import annotations

from django.apps import AppConfig


class AlertsConfig(AppConfig):
    """Conditions worth a human's attention, as alert rows, and their webhooks."""

    name = "alerts"
    verbose_name = "Alerts"

    def ready(self) -> None:
        from alerts.services import alerts_forget_chain
        from ledger.ingest.ledger import chain_replaced

        chain_replaced.connect(alerts_forget_chain, dispatch_uid="alerts_forget_chain")
