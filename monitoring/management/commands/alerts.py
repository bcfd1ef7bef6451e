"""``python manage.py alerts [--once]`` — evaluate the alert rules every ALERTS_INTERVAL (one active replica).

Each pass opens the alerts whose condition started to hold, resolves those whose cause is gone (one line each
here), and re-enqueues the webhook deliveries that are due, so a Redis flush or a dead worker only delays them.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from contextlib import ExitStack
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, close_old_connections

from monitoring.alerts.services import EvaluationResult, alerts_evaluate
from monitoring.alerts.webhooks import webhook_deliveries_reconcile
from monitoring.locks import advisory_lock

logger = logging.getLogger("monitoring.alerts")

ALERTS_LOCK = "alerts"


class Command(BaseCommand):
    help = "Evaluate the alert rules every ALERTS_INTERVAL seconds; open and resolve alerts, re-enqueue webhooks."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="one evaluation, then exit")

    def handle(self, *args: Any, **options: Any) -> None:
        once: bool = options["once"]
        stopping = threading.Event()
        if not once:

            def _stop(signum: int, frame: FrameType | None) -> None:
                stopping.set()

            signal.signal(signal.SIGTERM, _stop)
            signal.signal(signal.SIGINT, _stop)

        interval = float(settings.ALERTS_INTERVAL)
        with ExitStack() as stack:
            try:
                # A standby replica waits for the lock; a one-off pass refuses to run beside the active one.
                lock = stack.enter_context(advisory_lock(ALERTS_LOCK, wait=not once))
            except TimeoutError as exc:
                raise CommandError(f"alerts: {exc}") from exc
            if not once:
                self.stdout.write(f"alerts: evaluating every {interval:g}s")
            while not stopping.is_set():
                started = time.monotonic()
                try:
                    result = alerts_evaluate()
                    enqueued = webhook_deliveries_reconcile()
                except Exception as exc:
                    if once:
                        raise CommandError(f"alerts: {type(exc).__name__}: {exc}") from exc
                    # Keep evaluating: a pass that failed changed nothing (each alert commits on its own).
                    if isinstance(exc, DatabaseError):
                        logger.warning("alerts: database error (%s); trying again", exc)
                    else:
                        logger.exception("alerts: evaluation failed; trying again")
                    close_old_connections()
                    stopping.wait(interval)
                    continue
                self._report(result)
                if once:
                    self.stdout.write(
                        f"alerts: {len(result.opened)} opened, {len(result.resolved)} resolved, "
                        f"{result.unchanged} still open, {enqueued} webhook deliveries enqueued"
                        + (f"; could not evaluate {', '.join(result.unknown)}" if result.unknown else "")
                    )
                    return
                close_old_connections()
                if not lock.still_held():
                    raise CommandError(
                        "alerts: lost the lock (database connection dropped); exiting so a standby takes over"
                    )
                stopping.wait(max(0.0, interval - (time.monotonic() - started)))
        self.stdout.write("alerts: stopped")

    def _report(self, result: EvaluationResult) -> None:
        for alert in result.opened:
            self.stdout.write(f"alerts: opened #{alert.id} {alert.severity} {alert.kind}: {alert.summary}")
        for alert in result.resolved:
            self.stdout.write(f"alerts: resolved #{alert.id} {alert.kind}: {alert.resolution}")
