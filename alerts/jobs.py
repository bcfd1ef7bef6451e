"""Thin RQ jobs: a delivery id in; the services claim the row, POST it and settle it."""

from __future__ import annotations

from alerts.webhooks import webhook_delivery_run


def deliver_webhook(delivery_id: int) -> str | None:
    return webhook_delivery_run(delivery_id=delivery_id)
