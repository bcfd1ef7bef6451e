"""``python manage.py verifier [--once]`` — verify signatures as they arrive; keep progress fresh.

Woken by Postgres NOTIFY from the intake (sent on commit), so a signature is verified within milliseconds;
a periodic sweep also matches and expires waiting signatures, picks up anything missed (a notification sent
while the listener was reconnecting, say), and refreshes the progress of pending batches. Safe as several
replicas: every claim skips rows another verifier holds.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from controlplane.locks import PgListener
from controlplane.loops import Loop, loop_run
from intake.jobs import intake_sweep
from intake.services import NOTIFY_CHANNEL
from intake.verify import signatures_verify_batches

logger = logging.getLogger("intake")

# After the first notification, gather others this long so a burst becomes one pass (over its batches).
GATHER_SECONDS = 0.02
# Under sustained load, gather as long as the last pass took (at most this long): a pass costs about one pairing
# per operator however few batches it covers, so passes that grow with the load cost less per signature, and the
# verifier leaves the cores to the intake at least half the time instead of running one small pass after another.
MAX_GATHER_SECONDS = 0.25
# The longest a step waits for notifications, so a stop request is seen promptly.
MAX_WAIT_SECONDS = 0.5


def gather_after(*, last_pass: float, last_batches: int) -> float:
    """Seconds to gather notifications after the first, given how long the last pass took (0: none ran) and how
    many batches it covered. Only a pass over several batches follows the load: a flood of posts for one batch
    (forgeries, say) would only wait longer for the same batch, and its quorum with it."""
    if last_batches < 2:
        return GATHER_SECONDS
    return min(MAX_GATHER_SECONDS, max(GATHER_SECONDS, last_pass))


class Command(BaseCommand):
    help = "Verify pending signatures in passes over the batches notified and keep quorum progress fresh."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="one sweep, then exit")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["once"]:
            counts = intake_sweep()
            self.stdout.write("verifier: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
            return
        interval = float(settings.VERIFIER_POLL_INTERVAL)
        listener = PgListener(NOTIFY_CHANNEL)
        next_sweep = 0.0
        last_pass, last_batches = 0.0, 0

        def step() -> None:
            nonlocal next_sweep, last_pass, last_batches
            if time.monotonic() >= next_sweep:
                counts = intake_sweep()
                if counts["verified"] or counts["invalid"] or counts["matched"] or counts["expired"]:
                    logger.info("verifier sweep: %s", counts)
                next_sweep = time.monotonic() + interval
            wait = max(0.01, min(MAX_WAIT_SECONDS, next_sweep - time.monotonic()))
            notified = listener.wait(
                timeout=wait, gather=gather_after(last_pass=last_pass, last_batches=last_batches)
            )
            if notified:
                # Every batch heard of since the last step, in passes of one pairing product each.
                started = time.monotonic()
                signatures_verify_batches(batch_identifiers=sorted(notified))
                last_pass, last_batches = time.monotonic() - started, len(notified)
                logger.debug("verifier: %d batches notified, verified in %.3f s", len(notified), last_pass)
            else:
                last_pass, last_batches = 0.0, 0

        try:
            # No lock: replicas share the work. The step waits for notifications itself, so no interval.
            loop_run(Loop(name="verifier", step=step, interval=0.0))
        finally:
            listener.close()
