"""The one row queue (controlplane.rowqueue): claims, fencing and backoff, for both of its kinds of queue.

Recovery tasks (a held status and a holder token) and webhook deliveries (the lease's end as the token) have
tests of their own; these pin what the mechanism itself promises to each.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.models import Alert, AlertKind, AlertSeverity, WebhookDelivery, WebhookEndpoint, WebhookEvent
from alerts.webhooks import QUEUE as WEBHOOKS
from alerts.webhooks import webhook_deliveries_request
from controlplane.rowqueue import Lease, backoff_seconds, row_claim, row_renew, row_settle, rows_due
from recovery.models import RecoveryKind, RecoveryStatus, RecoveryTask
from recovery.services.tasks import QUEUE as TASKS
from recovery.services.tasks import recovery_task_request


def _expire(model: type[RecoveryTask] | type[WebhookDelivery], row_id: int) -> None:
    model.objects.filter(id=row_id).update(lease_until=timezone.now() - timedelta(seconds=1))


@pytest.mark.django_db
def test_it_fences_a_settle_by_the_holders_token() -> None:
    task, _ = recovery_task_request(kind=RecoveryKind.REPLAY, subject="0xaa")
    first = row_claim(queue=TASKS, row_id=task.id, token="first")
    assert first is not None
    assert row_claim(queue=TASKS, row_id=task.id, token="second") is None, "a live lease holds the row"
    assert RecoveryTask.objects.get(id=task.id).status == RecoveryStatus.RUNNING

    _expire(RecoveryTask, task.id)
    assert [row[0] for row in rows_due(queue=TASKS, fields=("id",), limit=10)] == [task.id]
    second = row_claim(queue=TASKS, row_id=task.id, token="second")
    assert second is not None
    # The first holder outlived its lease: it can neither renew nor settle the second one's claim.
    assert not row_renew(queue=TASKS, lease=first)
    assert not row_settle(queue=TASKS, lease=first, fields={"status": RecoveryStatus.DONE})
    assert row_renew(queue=TASKS, lease=second)
    assert row_settle(queue=TASKS, lease=second, fields={"status": RecoveryStatus.DONE, "lease_until": None})
    assert RecoveryTask.objects.get(id=task.id).attempts == 2


@pytest.mark.django_db
def test_it_refuses_a_claim_without_the_token_its_queue_fences_by() -> None:
    task, _ = recovery_task_request(kind=RecoveryKind.REPLAY, subject="0xbb")
    with pytest.raises(ValueError, match="needs a token"):
        row_claim(queue=TASKS, row_id=task.id)


@pytest.mark.django_db
def test_it_fences_a_settle_by_the_leases_end_and_keeps_the_row_pending() -> None:
    WebhookEndpoint.objects.create(name="hook", url="http://127.0.0.1:9/hook")
    alert = Alert.objects.create(
        kind=AlertKind.OPERATOR_DOWN,
        subject="0xcc",
        severity=AlertSeverity.CRITICAL,
        summary="down",
        opened_at=timezone.now(),
    )
    assert webhook_deliveries_request(alert=alert, event=WebhookEvent.FIRING) == 1
    delivery = WebhookDelivery.objects.get(alert=alert, event=WebhookEvent.FIRING)
    first = row_claim(queue=WEBHOOKS, row_id=delivery.id)
    assert first is not None
    assert WebhookDelivery.objects.get(id=delivery.id).status == "pending"
    assert row_claim(queue=WEBHOOKS, row_id=delivery.id) is None
    assert rows_due(queue=WEBHOOKS, fields=("id",), limit=10) == [], "a held row is not due"
    with pytest.raises(ValueError, match="can't be renewed"):
        row_renew(queue=WEBHOOKS, lease=first)

    _expire(WebhookDelivery, delivery.id)
    second = row_claim(queue=WEBHOOKS, row_id=delivery.id)
    assert second is not None
    assert not row_settle(queue=WEBHOOKS, lease=first, fields={"status": "delivered"})
    assert row_settle(
        queue=WEBHOOKS, lease=Lease(row_id=delivery.id, token=second.token), fields={"lease_until": None}
    )


def test_it_backs_off_exponentially_up_to_the_cap_with_optional_jitter() -> None:
    assert [backoff_seconds(attempts=n, cap=10) for n in (0, 1, 2, 3, 4, 5, 60)] == [1, 1, 2, 4, 8, 10, 10]
    jittered = [backoff_seconds(attempts=4, cap=10, jitter=True) for _ in range(200)]
    assert all(4 <= delay <= 8 for delay in jittered)
    assert len(set(jittered)) > 1
