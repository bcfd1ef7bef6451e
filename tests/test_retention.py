"""Retention prunes the bulky rows of long-settled work in small transactions; the ledger, summaries, alerts
and the staff audit trail stay."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from alerts.models import Alert, WebhookAttempt, WebhookDelivery, WebhookDeliveryStatus, WebhookEndpoint
from intake.models import Signature, SignatureStatus
from ledger.models import Batch, BatchStatus
from progress.models import BatchProgress
from progress.services import batch_progress_refresh
from recovery.models import (
    CatchupAsk,
    RecoveryKind,
    RecoveryRun,
    RecoveryStatus,
    RecoveryTask,
    SignatureDelivery,
)
from recovery.services import retention
from recovery.services.retention import retention_prune
from tests.factories import ETH, batch_create, hex32, operator_create

pytestmark = pytest.mark.django_db


def signatures(batch: Batch, operator_id: str, count: int) -> None:
    Signature.objects.bulk_create(
        Signature(
            batch_identifier=batch.identifier,
            batch_merkle_root=batch.merkle_root,
            sender_address=batch.sender,
            operator_id=operator_id,
            signature_x=hex32(f"x-{batch.identifier}-{n}"),
            signature_y=hex32(f"y-{batch.identifier}-{n}"),
            status=SignatureStatus.VERIFIED if n == 0 else SignatureStatus.INVALID,
        )
        for n in range(count)
    )


def test_it_prunes_old_settled_work_in_chunks_and_keeps_the_ledger_summaries_and_audit(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.RETENTION_SIGNATURE_DAYS = 30
    settings.RETENTION_WEBHOOK_ATTEMPT_DAYS = 30
    settings.RETENTION_RECOVERY_TASK_DAYS = 30
    monkeypatch.setattr(retention, "CHUNK", 7)  # several small transactions
    long_ago = timezone.now() - timedelta(days=31)
    operator = operator_create(label="op", stake=10 * ETH)
    old = batch_create(label="old", created_block=10, status=BatchStatus.VERIFIED, verified_block=11)
    recent = batch_create(label="recent", created_block=20, status=BatchStatus.VERIFIED, verified_block=21)
    pending = batch_create(label="pending", created_block=30)
    for batch in (old, recent, pending):
        signatures(batch, operator.operator_id, 20)
        batch_progress_refresh(batch_identifier=batch.identifier)
    Batch.objects.filter(id=old.id).update(updated_at=long_ago)
    Signature.objects.filter(batch_identifier=old.identifier).update(received_at=long_ago)
    # Forwarded and acknowledged: its delivery goes with it.
    SignatureDelivery.objects.create(
        signature=Signature.objects.filter(batch_identifier=old.identifier).earliest("id"),
        boot_id="boot-1",
        batch_identifier=old.identifier,
        answer="accepted",
    )
    # A signature that came after all, long after its batch was verified, waits for its own time to pass.
    signature_late = Signature.objects.create(
        batch_identifier=old.identifier,
        batch_merkle_root=old.merkle_root,
        sender_address=old.sender,
        operator_id=operator.operator_id,
        signature_x=hex32("late-x"),
        signature_y=hex32("late-y"),
        status=SignatureStatus.VERIFIED,
    )
    for label, asked in (("asked-long-ago", long_ago), ("asked-lately", timezone.now())):
        CatchupAsk.objects.create(
            operator_id=operator.operator_id,
            batch_identifier=hex32(label),
            asks=1,
            first_asked_at=asked,
            last_asked_at=asked,
        )
    alert = Alert.objects.create(
        kind="batch_stalled", subject=old.identifier, severity="warning", summary="s", opened_at=long_ago
    )
    endpoint = WebhookEndpoint.objects.create(name="pager", url="http://127.0.0.1:9/hook")
    delivered = WebhookDelivery.objects.create(
        endpoint=endpoint,
        alert=alert,
        event="firing",
        status=WebhookDeliveryStatus.DELIVERED,
        next_attempt_at=timezone.now(),
    )
    for _ in range(3):
        WebhookAttempt.objects.create(delivery=delivered, status_code=500)
    WebhookAttempt.objects.update(attempted_at=long_ago)
    run = RecoveryRun.objects.create(kind=RecoveryKind.REPLAY, scope=old.identifier, requested_by="alice")
    for n, (status, by_run) in enumerate(
        [
            (RecoveryStatus.DONE, False),
            (RecoveryStatus.CANCELLED, False),
            (RecoveryStatus.DONE, True),
            (RecoveryStatus.PENDING, False),
        ]
    ):
        RecoveryTask.objects.create(
            kind=RecoveryKind.FORWARD,
            subject=str(n),
            status=status,
            next_attempt_at=long_ago,
            finished_at=long_ago if status != RecoveryStatus.PENDING else None,
            run=run if by_run else None,
        )

    pruned = retention_prune()

    assert pruned == {"signatures": 20, "webhook_attempts": 3, "recovery_tasks": 2, "catchup_asks": 1}
    assert list(Signature.objects.filter(batch_identifier=old.identifier)) == [signature_late]
    assert list(CatchupAsk.objects.values_list("batch_identifier", flat=True)) == [hex32("asked-lately")]
    assert not SignatureDelivery.objects.exists()
    assert (
        Signature.objects.filter(batch_identifier__in=[recent.identifier, pending.identifier]).count() == 40
    )
    assert BatchProgress.objects.filter(batch=old).exists(), "the summary stays"
    assert Batch.objects.count() == 3
    assert Alert.objects.filter(id=alert.id).exists()
    assert RecoveryTask.objects.filter(run=run).count() == 1, "a staff run's tasks are its audit trail"
    assert RecoveryTask.objects.filter(status=RecoveryStatus.PENDING).count() == 1
    assert retention_prune() == {
        "signatures": 0,
        "webhook_attempts": 0,
        "recovery_tasks": 0,
        "catchup_asks": 0,
    }
