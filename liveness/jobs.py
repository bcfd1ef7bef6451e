"""RQ-shaped entry points for liveness (thin adapters over the services)."""

from __future__ import annotations

import logging
from contextlib import ExitStack

from controlplane.locks import advisory_lock
from liveness.services import operators_probe

logger = logging.getLogger("liveness")

PROBE_LOCK = "probe_operators"


def probe_operators_job() -> int | None:
    """Run one probe round; the number of state changes, or None when another replica holds the probe lock."""
    with ExitStack() as stack:
        try:
            stack.enter_context(advisory_lock(PROBE_LOCK))
        except TimeoutError:
            logger.info("probe_operators_job: skipped, another replica is probing")
            return None
        outcomes = operators_probe()
    changes = [outcome for outcome in outcomes if outcome.changed]
    for outcome in changes:
        logger.info("liveness: %s", outcome.describe())
    return len(changes)
