"""``python manage.py probe_operators [--once]`` — probe every registered operator's node API (one active replica)."""

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

from monitoring.liveness.jobs import PROBE_LOCK
from monitoring.liveness.services import LIVE_STATES, ProbeOutcome, operators_probe
from monitoring.locks import advisory_lock

logger = logging.getLogger("monitoring.liveness")


class Command(BaseCommand):
    help = "Probe each registered operator's node API every LIVENESS_PROBE_INTERVAL and record state changes."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="run one probe round, then exit")

    def handle(self, *args: Any, **options: Any) -> None:
        once: bool = options["once"]
        stopping = threading.Event()
        if not once:

            def _stop(signum: int, frame: FrameType | None) -> None:
                stopping.set()

            signal.signal(signal.SIGTERM, _stop)
            signal.signal(signal.SIGINT, _stop)

        with ExitStack() as stack:
            try:
                # A standby replica waits for the lock; a one-off round refuses to run beside the active one.
                lock = stack.enter_context(advisory_lock(PROBE_LOCK, wait=not once))
            except TimeoutError as exc:
                raise CommandError(f"probe_operators: {exc}") from exc
            if not once:
                self.stdout.write(
                    f"probe_operators: every {settings.LIVENESS_PROBE_INTERVAL:g}s, "
                    f"timeout {settings.LIVENESS_PROBE_TIMEOUT:g}s, "
                    f"concurrency {settings.LIVENESS_PROBE_CONCURRENCY}"
                )
            while not stopping.is_set():
                started = time.monotonic()
                try:
                    outcomes = operators_probe()
                except DatabaseError as exc:
                    if once:
                        raise CommandError(f"probe_operators: database error: {exc}") from exc
                    logger.warning("probe_operators: database error (%s); trying again", exc)
                    close_old_connections()
                    stopping.wait(settings.LIVENESS_PROBE_INTERVAL)
                    continue
                self._report(outcomes)
                if once:
                    live = sum(1 for outcome in outcomes if outcome.state in LIVE_STATES)
                    self.stdout.write(
                        f"probe_operators: probed {len(outcomes)} operators, {live} live, "
                        f"{sum(1 for outcome in outcomes if outcome.changed)} changes"
                    )
                    return
                # A long-lived process drops broken or expired database connections between rounds.
                close_old_connections()
                if not lock.still_held():
                    raise CommandError(
                        "probe_operators: lost the lock (database connection dropped); exiting so a standby takes over"
                    )
                stopping.wait(max(0.0, settings.LIVENESS_PROBE_INTERVAL - (time.monotonic() - started)))
        self.stdout.write("probe_operators: stopped")

    def _report(self, outcomes: list[ProbeOutcome]) -> None:
        for outcome in outcomes:
            if outcome.changed:
                self.stdout.write(f"probe_operators: {outcome.describe()}")
