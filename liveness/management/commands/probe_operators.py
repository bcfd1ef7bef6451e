"""``python manage.py probe_operators [--once]`` — probe every registered operator's node API (one active replica)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from controlplane.locks import advisory_lock
from controlplane.loops import Loop, loop_run
from liveness.jobs import PROBE_LOCK
from liveness.services import LIVE_STATES, ProbeOutcome, operators_probe


class Command(BaseCommand):
    help = "Probe each registered operator's node API every LIVENESS_PROBE_INTERVAL and record state changes."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="run one probe round, then exit")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["once"]:
            # A one-off round refuses to run beside the active replica.
            try:
                with advisory_lock(PROBE_LOCK):
                    outcomes = operators_probe()
            except TimeoutError as exc:
                raise CommandError(f"probe_operators: {exc}") from exc
            except DatabaseError as exc:
                raise CommandError(f"probe_operators: database error: {exc}") from exc
            self._report(outcomes)
            live = sum(1 for outcome in outcomes if outcome.state in LIVE_STATES)
            self.stdout.write(
                f"probe_operators: probed {len(outcomes)} operators, {live} live, "
                f"{sum(1 for outcome in outcomes if outcome.changed)} changes"
            )
            return

        def active() -> None:
            self.stdout.write(
                f"probe_operators: every {settings.LIVENESS_PROBE_INTERVAL:g}s, "
                f"timeout {settings.LIVENESS_PROBE_TIMEOUT:g}s, "
                f"concurrency {settings.LIVENESS_PROBE_CONCURRENCY}"
            )

        loop_run(
            Loop(
                name="probe_operators",
                step=lambda: self._report(operators_probe()),
                interval=float(settings.LIVENESS_PROBE_INTERVAL),
                lock=PROBE_LOCK,
                on_active=active,
            )
        )
        self.stdout.write("probe_operators: stopped")

    def _report(self, outcomes: list[ProbeOutcome]) -> None:
        for outcome in outcomes:
            if outcome.changed:
                self.stdout.write(f"probe_operators: {outcome.describe()}")
