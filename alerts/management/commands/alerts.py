"""``python manage.py alerts [--once]`` — evaluate the alert rules every ALERTS_INTERVAL (one active replica).

Each pass opens the alerts whose condition started to hold, resolves those whose cause is gone (one line each
here), and re-enqueues the webhook deliveries that are due, so a Redis flush or a dead worker only delays them.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from alerts.services import EvaluationResult, alerts_evaluate
from alerts.webhooks import webhook_deliveries_reconcile
from controlplane.locks import advisory_lock
from controlplane.loops import Loop, loop_run

ALERTS_LOCK = "alerts"


class Command(BaseCommand):
    help = "Evaluate the alert rules every ALERTS_INTERVAL seconds; open and resolve alerts, re-enqueue webhooks."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="one evaluation, then exit")

    def handle(self, *args: Any, **options: Any) -> None:
        interval = float(settings.ALERTS_INTERVAL)
        if options["once"]:
            # A one-off pass refuses to run beside the active replica.
            try:
                with advisory_lock(ALERTS_LOCK):
                    result = alerts_evaluate()
                    enqueued = webhook_deliveries_reconcile()
            except TimeoutError as exc:
                raise CommandError(f"alerts: {exc}") from exc
            except Exception as exc:
                raise CommandError(f"alerts: {type(exc).__name__}: {exc}") from exc
            self._report(result)
            self.stdout.write(
                f"alerts: {len(result.opened)} opened, {len(result.resolved)} resolved, "
                f"{result.unchanged} still open, {enqueued} webhook deliveries enqueued"
                + (f"; could not evaluate {', '.join(result.unknown)}" if result.unknown else "")
            )
            return

        def step() -> None:
            # A pass that fails changes nothing half-way: each alert commits on its own.
            self._report(alerts_evaluate())
            webhook_deliveries_reconcile()

        loop_run(
            Loop(
                name="alerts",
                step=step,
                interval=interval,
                lock=ALERTS_LOCK,
                on_active=lambda: self.stdout.write(f"alerts: evaluating every {interval:g}s"),
            )
        )
        self.stdout.write("alerts: stopped")

    def _report(self, result: EvaluationResult) -> None:
        for alert in result.opened:
            self.stdout.write(f"alerts: opened #{alert.id} {alert.severity} {alert.kind}: {alert.summary}")
        for alert in result.resolved:
            self.stdout.write(f"alerts: resolved #{alert.id} {alert.kind}: {alert.resolution}")
