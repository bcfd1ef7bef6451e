"""Retention: the bulky rows of work long settled are pruned in small transactions, so nothing grows without
bound (forgers' signatures included). What stays: the ledger (events, batches, operators, stake history), each
batch's progress summary, alerts, staff runs and their tasks (the audit trail), and anything still open.

- signatures of batches verified more than RETENTION_SIGNATURE_DAYS ago (their deliveries go with them);
- webhook attempts of delivered deliveries older than RETENTION_WEBHOOK_ATTEMPT_DAYS;
- recovery tasks that finished more than RETENTION_RECOVERY_TASK_DAYS ago, unless a staff run asked for them;
- catch-up asks not repeated for RETENTION_RECOVERY_TASK_DAYS (their batch is long settled).

Run by the recovery loop at most once per RETENTION_INTERVAL; each call deletes at most ``budget`` rows per kind.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

logger = logging.getLogger("recovery")

CHUNK = 1000

# Each scan starts from what is old by its own time column (BRIN-indexed, in arrival order), so a pass costs the
# rows it prunes, not the table: when nothing is old enough it reads nothing.
# Their deliveries go in the same statement: a raw DELETE does not cascade as the ORM does, and the deferred
# foreign key would refuse the commit.
_SIGNATURES = """
WITH doomed AS MATERIALIZED (
    SELECT s.id FROM monitoring_signature s JOIN monitoring_batch b ON b.identifier = s.batch_identifier
    WHERE s.received_at < %(cutoff)s AND b.status = 'verified' AND b.updated_at < %(cutoff)s
    LIMIT %(limit)s
), deliveries AS (
    DELETE FROM recovery_signaturedelivery WHERE signature_id IN (SELECT id FROM doomed)
)
DELETE FROM monitoring_signature WHERE id IN (SELECT id FROM doomed)
"""
_WEBHOOK_ATTEMPTS = """
DELETE FROM monitoring_webhookattempt WHERE id IN (
    SELECT a.id FROM monitoring_webhookattempt a JOIN monitoring_webhookdelivery d ON d.id = a.delivery_id
    WHERE d.status = 'delivered' AND a.attempted_at < %(cutoff)s
    LIMIT %(limit)s
)
"""
_RECOVERY_TASKS = """
DELETE FROM recovery_recoverytask WHERE id IN (
    SELECT id FROM recovery_recoverytask
    WHERE finished_at < %(cutoff)s AND status IN ('done', 'cancelled') AND run_id IS NULL
    LIMIT %(limit)s
)
"""
# Asks about a batch matter while it is pending and owed; one not repeated for the retention period is settled.
_CATCHUP_ASKS = """
DELETE FROM recovery_catchupask WHERE id IN (
    SELECT id FROM recovery_catchupask WHERE last_asked_at < %(cutoff)s LIMIT %(limit)s
)
"""


def _prune(sql: str, *, cutoff: datetime, budget: int) -> int:
    deleted = 0
    while deleted < budget:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, {"cutoff": cutoff, "limit": min(CHUNK, budget - deleted)})
            count = cursor.rowcount
        deleted += count
        if count < CHUNK:
            break
    return deleted


def retention_prune(*, budget: int = 20_000) -> dict[str, int]:
    """Delete what the retention settings let go of; how many rows of each kind."""
    now = timezone.now()
    days = timedelta(days=1)
    pruned = {
        "signatures": _prune(
            _SIGNATURES, cutoff=now - settings.RETENTION_SIGNATURE_DAYS * days, budget=budget
        ),
        "webhook_attempts": _prune(
            _WEBHOOK_ATTEMPTS, cutoff=now - settings.RETENTION_WEBHOOK_ATTEMPT_DAYS * days, budget=budget
        ),
        "recovery_tasks": _prune(
            _RECOVERY_TASKS, cutoff=now - settings.RETENTION_RECOVERY_TASK_DAYS * days, budget=budget
        ),
        "catchup_asks": _prune(
            _CATCHUP_ASKS, cutoff=now - settings.RETENTION_RECOVERY_TASK_DAYS * days, budget=budget
        ),
    }
    if any(pruned.values()):
        logger.info("retention: pruned %s", pruned)
    return pruned
