"""``python manage.py recovery [--once] [--execute]`` — find recovery work, and make sure it gets done.

Each pass: watch the aggregator's boot id (a new one replays every pending batch), request forwarding of
verified signatures the current aggregator has not acknowledged, replay batches stuck with a quorum of verified
signatures, answer on chain those the aggregator can't (with STANDBY_RESPONDER), ask lagging operators to catch
up, and re-enqueue every task that is due or whose lease expired.
One active replica (advisory lock); RQ workers run the tasks. ``--execute`` also runs due tasks in this
process, for a deployment without workers.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from controlplane.loops import Loop, loop_run
from controlplane.rowcounts import rowcounts_compact
from recovery.services.retention import retention_prune

logger = logging.getLogger("recovery")


def recovery_pass(*, execute: bool = False) -> dict[str, int]:
    from recovery.jobs import run_recovery_task
    from recovery.models import RecoveryStatus, RecoveryTask
    from recovery.services.catchup import catchups_request
    from recovery.services.tasks import recovery_reconcile
    from recovery.services.watch import (
        aggregator_reachable,
        aggregator_watch,
        signatures_forward_request,
        standby_responses_request,
        stuck_batches_replay,
    )

    counts = {
        "new_aggregator_boot": int(aggregator_watch() is not None),
        "forwards": signatures_forward_request(),
        "stuck_replays": stuck_batches_replay(),
        "standby_responses": standby_responses_request(aggregator_reachable=aggregator_reachable()),
        "catchups": catchups_request(),
        "enqueued": len(recovery_reconcile()),
        "executed": 0,
    }
    if execute:
        due = RecoveryTask.objects.filter(
            status=RecoveryStatus.PENDING, next_attempt_at__lte=timezone.now()
        ).values_list("id", flat=True)[:200]
        for task_id in list(due):
            counts["executed"] += int(run_recovery_task(task_id) is not None)
    return counts


class Command(BaseCommand):
    help = "Drive recovery: forwarding, aggregator replays, operator catch-up, and the task reconciler."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="one pass, then exit")
        parser.add_argument("--execute", action="store_true", help="also run due tasks here (no RQ worker)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["once"]:
            counts = recovery_pass(execute=options["execute"])
            self.stdout.write("recovery: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
            return

        next_retention = 0.0

        def step() -> None:
            nonlocal next_retention
            counts = recovery_pass(execute=options["execute"])
            # Keeps reads of the counts bounded by the writes of one pass.
            rowcounts_compact()
            if any(v for k, v in counts.items() if k != "enqueued"):
                logger.info("recovery pass: %s", counts)
            if time.monotonic() >= next_retention:
                retention_prune()
                next_retention = time.monotonic() + float(settings.RETENTION_INTERVAL)

        loop_run(
            Loop(name="recovery", step=step, interval=float(settings.RECOVERY_INTERVAL), lock="recovery")
        )
