"""``python manage.py verifier [--once]`` — match, expire and verify signatures; refresh quorum progress.

Safe as several replicas: every claim skips rows another verifier holds. RQ jobs verify sooner; this loop
makes sure nothing waits on Redis.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from monitoring.intake.jobs import intake_sweep

logger = logging.getLogger("monitoring.intake")


class Command(BaseCommand):
    help = "Verify pending signatures in micro-batches per batch and keep quorum progress fresh."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="one sweep, then exit")

    def handle(self, *args: Any, **options: Any) -> None:
        stopping = threading.Event()

        def _stop(signum: int, frame: FrameType | None) -> None:
            stopping.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        while not stopping.is_set():
            counts = intake_sweep()
            if options["once"]:
                self.stdout.write("verifier: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
                return
            if counts["verified"] or counts["invalid"] or counts["matched"] or counts["expired"]:
                logger.info("verifier: %s", counts)
            stopping.wait(float(settings.VERIFIER_POLL_INTERVAL))
