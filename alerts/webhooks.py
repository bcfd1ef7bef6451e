"""Webhook deliveries: one row per (endpoint, alert, event), claimed with a lease, retried until delivered.

Each alert opening ("firing") and resolution ("resolved") is owed to every active endpoint as one
WebhookDelivery row, written in the same transaction as the alert itself, so an alert never exists without its
deliveries. An RQ job only carries the row's id (enqueued on commit); ``webhook_deliveries_reconcile`` re-enqueues
every row that is due or whose lease expired, so a Redis flush or a dead worker only delays a delivery.

A delivery is retried with capped exponential backoff and jitter and never given up while its endpoint is active
(a deactivated endpoint's rows wait, untouched, until it is reactivated). Deliveries are independent: a receiver
that is down only costs its own rows a short timeout. The resolution of an alert is never sent to an endpoint
before its firing was delivered there. When a receiver answers again, its other pending rows are made due at
once, so it gets everything it missed without waiting out their backoff.

Signature (every POST; fail closed: with no WEBHOOK_SECRET nothing is sent, the attempt is logged as failing and
retried later)::

    Content-Type: application/json
    X-Controlplane-Event: firing | resolved
    X-Controlplane-Delivery: <delivery id; the same on every retry, so a receiver can drop a duplicate>
    X-Controlplane-Timestamp: <unix seconds when this attempt was signed>
    X-Controlplane-Signature: sha256=<hex HMAC-SHA256(WEBHOOK_SECRET, timestamp + "." + raw body)>

A receiver recomputes the HMAC over the exact bytes it received, compares in constant time, and rejects a
timestamp too far from its clock (replays). ``webhook_signature_verify`` does exactly that.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from alerts.models import (
    Alert,
    WebhookAttempt,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookEvent,
)
from alerts.payload import webhook_payload
from controlplane.jobs import job_enqueue
from controlplane.outbound import OutboundError, configured_target, request
from controlplane.rowqueue import Lease, RowQueue, row_claim, row_settle, rows_due, unleased
from controlplane.rowqueue import backoff_seconds as _backoff

logger = logging.getLogger("alerts")

SIGNATURE_HEADER = "X-Controlplane-Signature"
TIMESTAMP_HEADER = "X-Controlplane-Timestamp"
DELIVERY_HEADER = "X-Controlplane-Delivery"
EVENT_HEADER = "X-Controlplane-Event"
USER_AGENT = "controlplane-webhooks/1"
NO_SECRET = "WEBHOOK_SECRET is not configured: not sent (signing is required)"

_DELIVERY = WebhookDelivery._meta.db_table
_ENDPOINT = WebhookEndpoint._meta.db_table

# A claim leaves the row pending; its live lease marks it held, and the lease's end fences the settle. Only an
# active endpoint's rows are claimed, and a resolution only once its firing reached that endpoint.
QUEUE = RowQueue(
    model=WebhookDelivery,
    lease_seconds=lambda: float(settings.WEBHOOK_LEASE_SECONDS),
    claim_condition=f"""
        EXISTS (SELECT 1 FROM {_ENDPOINT} e WHERE e.id = r.endpoint_id AND e.active)
        AND NOT (r.event = 'resolved' AND EXISTS (
            SELECT 1 FROM {_DELIVERY} f WHERE f.endpoint_id = r.endpoint_id
                AND f.alert_id = r.alert_id AND f.event = 'firing' AND f.status = 'pending'))
    """,
)


# --- Signing ------------------------------------------------------------------------------------


def webhook_signature(*, secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def webhook_signature_verify(
    *, secret: str, timestamp: str, body: bytes, signature: str, tolerance: float = 300.0
) -> bool:
    """What a receiver does: the HMAC matches (constant time) and the timestamp is within ``tolerance`` s."""
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        return False
    expected = webhook_signature(secret=secret, timestamp=timestamp, body=body)
    return age <= tolerance and hmac.compare_digest(expected, signature)


# --- Requesting and enqueueing ------------------------------------------------------------------


def webhook_deliveries_request(*, alert: Alert, event: str) -> int:
    """Owe ``event`` of ``alert`` to every active endpoint; returns how many rows were new.

    Call it inside the transaction that opens or resolves the alert. Idempotent (one INSERT … ON CONFLICT DO
    NOTHING on the unique (endpoint, alert, event)): a repeat creates and sends nothing. Jobs go out on commit.
    """
    if event not in WebhookEvent.values:
        raise ValueError(f"unknown webhook event {event!r}")
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {_DELIVERY} (endpoint_id, alert_id, event, status, attempts, next_attempt_at,
                last_error, created_at)
            SELECT id, %s, %s, 'pending', 0, now(), '', now() FROM {_ENDPOINT} WHERE active
            ON CONFLICT (endpoint_id, alert_id, event) DO NOTHING
            RETURNING id
            """,
            [alert.id, event],
        )
        created = [row[0] for row in cursor.fetchall()]
    if created:
        transaction.on_commit(lambda: _enqueue_all([(i, 0) for i in created]))
    return len(created)


def webhook_delivery_enqueue(*, delivery_id: int, attempts: int) -> None:
    """Ask a worker to try the delivery soon. Best effort: the reconciler covers a lost enqueue."""
    # result_ttl=0: a finished job vanishes at once, so the same row can be enqueued again right away.
    job_enqueue(
        "alerts.jobs.deliver_webhook",  # by name: the job module imports this one
        delivery_id,
        job_id=f"webhook-{delivery_id}-{attempts}",
        result_ttl=0,
        failure_ttl=3600,
        what=f"webhook delivery {delivery_id}",
    )


def _firing_undelivered() -> Exists:
    """For a resolved row: its endpoint has not taken the alert's firing yet (so the resolution must wait)."""
    return Exists(
        WebhookDelivery.objects.filter(
            endpoint_id=OuterRef("endpoint_id"),
            alert_id=OuterRef("alert_id"),
            event=WebhookEvent.FIRING,
            status=WebhookDeliveryStatus.PENDING,
        )
    )


def _sendable(*, now: datetime) -> QuerySet[WebhookDelivery]:
    """Pending rows of active endpoints that no live lease holds and whose firing (for a resolution) is out."""
    return WebhookDelivery.objects.filter(
        unleased(now=now), status=WebhookDeliveryStatus.PENDING, endpoint__active=True
    ).exclude(Q(event=WebhookEvent.RESOLVED) & _firing_undelivered())


def webhook_deliveries_due(*, limit: int = 500) -> list[tuple[int, int]]:
    """(id, attempts) of the sendable rows that are due (or whose lease expired), longest waiting first."""
    return rows_due(queue=QUEUE, fields=("id", "attempts"), limit=limit, within=_sendable(now=timezone.now()))


def _enqueue_all(rows: list[tuple[int, int]]) -> None:
    for delivery_id, attempts in rows:
        webhook_delivery_enqueue(delivery_id=delivery_id, attempts=attempts)


def webhook_deliveries_reconcile(*, limit: int = 500) -> int:
    """(Re-)enqueue every delivery that is due or whose lease expired; returns how many. Run each alerts pass."""
    due = webhook_deliveries_due(limit=limit)
    _enqueue_all(due)
    return len(due)


def webhook_deliveries_retry_now(*, ids: list[int]) -> int:
    """Staff fixed a receiver: make these undelivered rows due now and enqueue them; returns how many."""
    now = timezone.now()
    count = WebhookDelivery.objects.filter(id__in=ids, status=WebhookDeliveryStatus.PENDING).update(
        next_attempt_at=now
    )
    due = list(_sendable(now=now).filter(id__in=ids).values_list("id", "attempts"))
    transaction.on_commit(lambda: _enqueue_all(due))
    return count


# --- Claim, send, settle ------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A delivery this worker holds until ``lease_until``, which doubles as the fencing token."""

    delivery: WebhookDelivery
    lease_until: datetime


def backoff_seconds(*, attempts: int) -> float:
    """Capped exponential backoff with jitter: 2^(n-1) s capped at WEBHOOK_BACKOFF_CAP, then 50 to 100% of it.

    Never gives up by itself; the jitter spreads out retries of rows that failed together.
    """
    return _backoff(attempts=attempts, cap=float(settings.WEBHOOK_BACKOFF_CAP), jitter=True)


def webhook_delivery_claim(*, delivery_id: int) -> Claim | None:
    """Take the row if it is due, its endpoint is active, nobody holds a live lease on it, and (for a
    resolution) the firing reached that endpoint first; None otherwise. One conditional UPDATE."""
    lease = row_claim(queue=QUEUE, row_id=delivery_id)
    if lease is None:
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint", "alert").filter(id=delivery_id).first()
    if delivery is None:  # its endpoint was deleted a moment ago (the rows cascade): nothing is owed any more
        return None
    assert isinstance(lease.token, datetime)  # fenced by the lease's end (no holder column)
    return Claim(delivery=delivery, lease_until=lease.token)


@dataclass(frozen=True)
class PostResult:
    status_code: int | None
    error: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def webhook_post(*, delivery: WebhookDelivery) -> PostResult:
    """POST the signed Alertmanager body once, with a short timeout; never raises for the receiver's sake."""
    secret = settings.WEBHOOK_SECRET
    if not secret:
        return PostResult(None, NO_SECRET, 0)
    payload = webhook_payload(alert=delivery.alert, event=delivery.event, receiver=delivery.endpoint.name)
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: delivery.event,
        DELIVERY_HEADER: str(delivery.id),
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: webhook_signature(secret=str(secret), timestamp=timestamp, body=body),
    }
    started = time.monotonic()
    try:
        # No redirects (http.client follows none): a receiver that moved is a failure to fix in the admin.
        answer = request(
            "POST",
            configured_target(delivery.endpoint.url),
            body=body,
            headers=headers,
            timeout=float(settings.WEBHOOK_TIMEOUT),
            max_bytes=WEBHOOK_ANSWER_MAX_BYTES,
        )
    except OutboundError as exc:
        return PostResult(None, exc.reason, _ms_since(started))
    # The status only: what a receiver says in its body is not ours to store or show.
    status = answer.status
    return PostResult(status, "" if 200 <= status < 300 else f"HTTP {status}", _ms_since(started))


# A receiver's answer is read (to keep the connection well-behaved) up to this much, never stored.
WEBHOOK_ANSWER_MAX_BYTES = 64 * 1024


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def webhook_delivery_settle(*, claim: Claim, response: PostResult) -> bool:
    """Log the attempt, then mark the row delivered (2xx) or due again after a backoff.

    The row changes only while this worker's lease (its ``lease_until``) is still on it; a late answer from a
    worker whose lease expired is logged but changes nothing. True when the row was updated.
    """
    delivery = claim.delivery
    now = timezone.now()
    fields: dict[str, object] = {
        "lease_until": None,
        "last_status_code": response.status_code,
        "last_error": response.error[:2000],
    }
    if response.ok:
        fields.update(status=WebhookDeliveryStatus.DELIVERED, delivered_at=now)
    else:
        fields.update(next_attempt_at=now + timedelta(seconds=backoff_seconds(attempts=delivery.attempts)))
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery,
            status_code=response.status_code,
            error=response.error[:2000],
            duration_ms=response.duration_ms,
        )
        updated = row_settle(
            queue=QUEUE, lease=Lease(row_id=delivery.id, token=claim.lease_until), fields=fields
        )
        if updated and response.ok:
            _receiver_is_back(endpoint_id=delivery.endpoint_id)
    if not response.ok:
        logger.info(
            "webhook %s of alert %s to %s failed (attempt %d): %s",
            delivery.event,
            delivery.alert_id,
            delivery.endpoint.name,
            delivery.attempts,
            response.error,
        )
    return bool(updated)


def _receiver_is_back(*, endpoint_id: int) -> None:
    """The receiver answers again: make its backed-off rows due now and enqueue them (on commit)."""
    now = timezone.now()
    WebhookDelivery.objects.filter(
        endpoint_id=endpoint_id, status=WebhookDeliveryStatus.PENDING, next_attempt_at__gt=now
    ).update(next_attempt_at=now)
    due = list(
        _sendable(now=now).filter(endpoint_id=endpoint_id).order_by("id").values_list("id", "attempts")[:500]
    )
    if due:
        transaction.on_commit(lambda: _enqueue_all(due))


def webhook_delivery_run(*, delivery_id: int) -> str | None:
    """Claim, POST, settle. Returns "delivered" or "retry", or None when the row was not ours to send."""
    claim = webhook_delivery_claim(delivery_id=delivery_id)
    if claim is None:
        return None
    try:
        response = webhook_post(delivery=claim.delivery)
    except Exception as exc:  # a bug building the body: keep the row, retry later, say why
        logger.exception("webhook delivery %s failed", delivery_id)
        response = PostResult(None, f"{type(exc).__name__}: {exc}"[:2000], 0)
    webhook_delivery_settle(claim=claim, response=response)
    return "delivered" if response.ok else "retry"
