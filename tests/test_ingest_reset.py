"""`ingest --reset` (a new devnet): nothing the old chain left shows up again, in any stage."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from alerts.models import Alert, AlertKind, AlertState, AlertWatch, WebhookDelivery, WebhookEndpoint
from dashboard.overview_selectors import alerts_latest
from intake.models import BatchRefusal, Signature
from ledger.ingest.ledger import ledger_reset
from ledger.models import Batch, Operator
from liveness.models import OperatorLiveness, OperatorState, OperatorStateChange
from liveness.services import operator_liveness_record
from progress.models import BatchProgress
from progress.services import batch_progress_refresh
from recovery.models import (
    AggregatorBoot,
    CatchupAsk,
    RecoveryKind,
    RecoveryRun,
    RecoveryTask,
    SignatureDelivery,
)
from recovery.services.tasks import recovery_task_request
from tests.factories import ETH, batch_create, hex32, operator_create
from tests.test_alerts_rules import evaluate

pytestmark = pytest.mark.django_db


def test_it_forgets_everything_built_on_the_old_chain_and_resolves_its_alerts(settings: Any) -> None:
    settings.WEBHOOK_SECRET = "s"
    WebhookEndpoint.objects.create(name="pager", url="http://127.0.0.1:9/hook")
    operator = operator_create(label="old", stake=50 * ETH)
    operator_create(label="other", stake=50 * ETH)
    batch = batch_create(created_block=10)
    signature = Signature.objects.create(
        batch_identifier=batch.identifier,
        batch_merkle_root=batch.merkle_root,
        sender_address=batch.sender,
        operator_id=operator.operator_id,
        signature_x=hex32("x"),
        signature_y=hex32("y"),
        status="verified",
    )
    batch_progress_refresh(batch_identifier=batch.identifier)
    operator_liveness_record(operator_id=operator.operator_id, state=OperatorState.DOWN, reason="gone")
    BatchRefusal.objects.create(operator_id=operator.operator_id, batch_identifier=batch.identifier)
    boot = AggregatorBoot.objects.create(boot_id="b" * 32, url="http://127.0.0.1:9")
    SignatureDelivery.objects.create(
        signature=signature, boot_id=boot.boot_id, batch_identifier=batch.identifier, answer="accepted"
    )
    recovery_task_request(kind=RecoveryKind.REPLAY, subject=batch.identifier)
    now = timezone.now()
    CatchupAsk.objects.create(
        operator_id=operator.operator_id,
        batch_identifier=batch.identifier,
        first_asked_at=now,
        last_asked_at=now,
    )
    RecoveryRun.objects.create(kind=RecoveryKind.REPLAY, scope=batch.identifier, requested_by="alice")
    AlertWatch.objects.create(key="aggregator", value="down", since=now)
    down = evaluate(AlertKind.OPERATOR_DOWN).opened
    assert len(down) == 1

    ledger_reset(chain_id=31337, reason="`ingest --reset` against a new devnet")

    for model in (
        Batch,
        BatchProgress,
        Operator,
        Signature,
        BatchRefusal,
        OperatorLiveness,
        OperatorStateChange,
        AggregatorBoot,
        SignatureDelivery,
        RecoveryTask,
        CatchupAsk,
        AlertWatch,
    ):
        assert not model.objects.exists(), model.__name__
    alert = Alert.objects.get(id=down[0].id)
    assert alert.state == AlertState.RESOLVED
    assert alert.resolution == "the ledger was reset: `ingest --reset` against a new devnet"
    # Receivers hear the resolution; the staff audit of recovery runs is kept.
    assert list(
        WebhookDelivery.objects.filter(alert=alert).values_list("event", flat=True).order_by("id")
    ) == [
        "firing",
        "resolved",
    ]
    assert RecoveryRun.objects.count() == 1


def test_it_shows_no_alert_of_the_old_chain_on_the_overview() -> None:
    operator = operator_create(label="old", stake=50 * ETH)
    operator_create(label="other", stake=50 * ETH)
    operator_liveness_record(operator_id=operator.operator_id, state=OperatorState.DOWN, reason="gone")
    assert len(evaluate(AlertKind.OPERATOR_DOWN).opened) == 1
    assert alerts_latest()[0] == 1

    ledger_reset(chain_id=31337, reason="new devnet")

    assert alerts_latest() == (0, [])
    # An alert of the new chain, once resolved, is shown again.
    operator = operator_create(label="new", stake=50 * ETH)
    operator_create(label="new-other", stake=50 * ETH)
    operator_liveness_record(operator_id=operator.operator_id, state=OperatorState.DOWN, reason="gone")
    opened = evaluate(AlertKind.OPERATOR_DOWN).opened
    operator_liveness_record(operator_id=operator.operator_id, state=OperatorState.UP, reason="back")
    evaluate(AlertKind.OPERATOR_DOWN)
    assert [a.id for a in alerts_latest()[1]] == [opened[0].id]
