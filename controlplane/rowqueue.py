"""Postgres as the queue: the one mechanism behind recovery tasks and webhook deliveries.

A queue is a table whose rows say what work is owed: ``status``, ``attempts``, ``next_attempt_at`` and
``lease_until``. A row is requested idempotently by its owner (a unique constraint and ``ON CONFLICT``), then:

- **claimed** by one conditional UPDATE, so two workers can never hold a row: it must be due and not leased (or
  its holder's lease ran out). The claim counts the attempt and returns a lease;
- **settled** only while the claim's lease is still on the row (fencing): a worker that outlived its lease and
  was replaced changes nothing;
- **retried** after a capped exponential backoff, never given up by the queue itself;
- **reconciled**: a periodic pass lists the rows that are due or whose lease expired, and their owner enqueues
  an RQ job for each (``controlplane.jobs``). A Redis flush or a dead worker only delays work.

clock_timestamp(), not now(): now() is the transaction's start, which a long transaction would freeze.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from django.db import connection, models
from django.db.models import Q, QuerySet
from django.utils import timezone

logger = logging.getLogger("controlplane.rowqueue")

Row = TypeVar("Row", bound=models.Model)

PENDING = "pending"


@dataclass(frozen=True)
class RowQueue(Generic[Row]):
    """How one table is used as a queue.

    ``held_status`` is the status a claim moves the row to (recovery tasks show "running"); None keeps it
    pending, the live lease alone marking it held (webhook deliveries). ``holder_column`` names a column that
    takes each claim's own token, which fences the claim even across lease renewals; without one the lease's
    end (``lease_until``) is the token, and the lease is never renewed. ``claim_condition`` is extra SQL over
    the row (alias ``r``) that must hold for a claim.
    """

    model: type[Row]
    lease_seconds: Callable[[], float]
    held_status: str | None = None
    holder_column: str | None = None
    claim_condition: str = ""
    touched_column: str | None = None  # set to the claim's time, when the table keeps one

    @property
    def table(self) -> str:
        return self.model._meta.db_table


@dataclass(frozen=True)
class Lease:
    """A claim on one row: the fencing token is the holder's own token, or the lease's end."""

    row_id: int
    token: str | datetime


def backoff_seconds(*, attempts: int, cap: float, jitter: bool = False) -> float:
    """Capped exponential backoff: 1, 2, 4 … seconds up to ``cap``; with ``jitter``, 50 to 100% of that.

    The jitter spreads out the retries of rows that failed together.
    """
    ceiling = float(min(cap, 2 ** min(max(0, attempts - 1), 32)))
    return ceiling * (0.5 + 0.5 * random.random()) if jitter else ceiling


def row_claim(*, queue: RowQueue[Any], row_id: int, token: str = "") -> Lease | None:
    """Take the row if it is due and unleased, or its holder's lease ran out; None if it is not ours to take."""
    sets = ["lease_until = clock_timestamp() + make_interval(secs => %(lease)s)", "attempts = r.attempts + 1"]
    held = ""
    if queue.held_status is not None:
        sets.append("status = %(held)s")
        held = "OR (r.status = %(held)s AND r.lease_until < clock_timestamp())"
    if queue.holder_column is not None:
        if not token:
            raise ValueError(
                f"a claim on {queue.table} needs a token (it is fenced by {queue.holder_column})"
            )
        sets.append(f"{queue.holder_column} = %(token)s")
    if queue.touched_column is not None:
        sets.append(f"{queue.touched_column} = clock_timestamp()")
    condition = f"AND ({queue.claim_condition})" if queue.claim_condition else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {queue.table} AS r SET {", ".join(sets)}
            WHERE r.id = %(id)s AND (
                (r.status = %(pending)s AND r.next_attempt_at <= clock_timestamp()
                    AND (r.lease_until IS NULL OR r.lease_until < clock_timestamp()))
                {held}) {condition}
            RETURNING r.lease_until
            """,
            {
                "lease": float(queue.lease_seconds()),
                "held": queue.held_status,
                "token": token,
                "id": row_id,
                "pending": PENDING,
            },
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return Lease(row_id=row_id, token=token if queue.holder_column is not None else row[0])


def _fence(queue: RowQueue[Any], lease: Lease) -> dict[str, object]:
    column = queue.holder_column or "lease_until"
    return {"id": lease.row_id, "status": queue.held_status or PENDING, column: lease.token}


def row_settle(*, queue: RowQueue[Any], lease: Lease, fields: dict[str, object]) -> bool:
    """Write ``fields`` (which end the lease) only while ``lease`` still holds the row; True if it did."""
    return bool(queue.model._default_manager.filter(**_fence(queue, lease)).update(**fields))


def row_renew(*, queue: RowQueue[Any], lease: Lease) -> bool:
    """Extend a lease this holder still has; False when it is no longer ours. Needs a holder column."""
    if queue.holder_column is None:
        raise ValueError(f"leases on {queue.table} are fenced by their end and can't be renewed")
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE {queue.table} SET lease_until = clock_timestamp() + make_interval(secs => %s)
            WHERE id = %s AND status = %s AND {queue.holder_column} = %s
            """,
            [float(queue.lease_seconds()), lease.row_id, queue.held_status or PENDING, lease.token],
        )
        return cursor.rowcount == 1


@contextmanager
def row_lease_kept(*, queue: RowQueue[Any], lease: Lease) -> Iterator[None]:
    """Renew the lease every third of its length while the body runs, so it never expires under live work.

    A worker that dies stops renewing, and the lease runs out as before; renewing is a thread of its own (with
    its own database connection) because the work itself blocks on the network.
    """
    done = threading.Event()
    every = max(0.2, float(queue.lease_seconds()) / 3)

    def keep() -> None:
        try:
            while not done.wait(every):
                try:
                    if not row_renew(queue=queue, lease=lease):
                        return  # taken over (or settled): nothing left to keep
                except Exception as exc:  # Postgres away: the lease may lapse, and then another takes over
                    logger.debug("could not renew the lease on %s %s: %s", queue.table, lease.row_id, exc)
        finally:
            connection.close()

    keeper = threading.Thread(target=keep, name=f"lease-{queue.table}-{lease.row_id}", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        done.set()
        keeper.join(timeout=5)


def unleased(*, now: datetime) -> Q:
    """Rows no live lease holds (never leased, or the lease ran out)."""
    return Q(lease_until__isnull=True) | Q(lease_until__lt=now)


def rows_due(
    *, queue: RowQueue[Row], fields: tuple[str, ...], limit: int, within: QuerySet[Row] | None = None
) -> list[tuple[Any, ...]]:
    """``fields`` of the rows a worker should be sent to: pending, due and unleased (longest waiting first),
    then held rows whose lease ran out. ``within`` narrows the rows (an owner's own conditions)."""
    now = timezone.now()
    rows = within if within is not None else queue.model._default_manager.all()
    due = list(
        rows.filter(unleased(now=now), status=PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at", "id")
        .values_list(*fields)[:limit]
    )
    if queue.held_status is None:
        return due
    expired = list(
        rows.filter(status=queue.held_status, lease_until__lt=now).order_by("id").values_list(*fields)[:limit]
    )
    return [*due, *expired]
