"""``python manage.py verifier [--once]`` — verify signatures per batch as they arrive; keep progress fresh.

Woken by Postgres NOTIFY from the intake (sent on commit), so a signature is verified within milliseconds;
a periodic sweep also matches and expires waiting signatures, picks up anything missed, and refreshes the
progress of pending batches. Safe as several replicas: every claim skips rows another verifier holds.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from monitoring.intake.jobs import intake_sweep
from monitoring.intake.services import NOTIFY_CHANNEL
from monitoring.intake.verify import signatures_verify_batch
from monitoring.locks import dedicated_connection

logger = logging.getLogger("monitoring.intake")

# After the first notification, gather others this long so a burst for one batch becomes one micro-batch.
GATHER_SECONDS = 0.02


class Command(BaseCommand):
    help = "Verify pending signatures in micro-batches per batch and keep quorum progress fresh."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="one sweep, then exit")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["once"]:
            counts = intake_sweep()
            self.stdout.write("verifier: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
            return
        stopping = threading.Event()

        def _stop(signum: int, frame: FrameType | None) -> None:
            stopping.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        interval = float(settings.VERIFIER_POLL_INTERVAL)
        listener = dedicated_connection()
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        next_sweep = 0.0
        try:
            while not stopping.is_set():
                if time.monotonic() >= next_sweep:
                    counts = intake_sweep()
                    if counts["verified"] or counts["invalid"] or counts["matched"] or counts["expired"]:
                        logger.info("verifier sweep: %s", counts)
                    next_sweep = time.monotonic() + interval
                    close_old_connections()
                pending: set[str] = set()
                wait = max(0.01, min(0.5, next_sweep - time.monotonic()))
                for notify in listener.notifies(timeout=wait, stop_after=1):
                    pending.add(notify.payload)
                if pending:
                    for notify in listener.notifies(timeout=GATHER_SECONDS):
                        pending.add(notify.payload)
                for identifier in sorted(pending):
                    signatures_verify_batch(batch_identifier=identifier)
        finally:
            listener.close()
