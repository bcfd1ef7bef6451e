"""``bench_history`` fills an empty database with a history the product's own reads agree with: signers match the
progress lists, the lagging operator owes exactly its missed batches, the newest pending signatures verify, and
detail older than the window is absent as retention leaves it."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from controlplane.rowcounts import rowcounts
from intake.jobs import intake_sweep
from intake.models import Signature, SignatureStatus
from ledger.models import Batch, BatchStatus, Operator
from liveness.models import OperatorLiveness
from progress.models import BatchProgress
from recovery.models import RecoveryKind, RecoveryTask, SignatureDelivery
from recovery.services.catchup import operator_catchup_batches
from tests.factories import batch_create

pytestmark = pytest.mark.django_db(transaction=True)


def generate(**options: object) -> str:
    out = StringIO()
    call_command("bench_history", stdout=out, **options)
    return out.getvalue()


def test_it_writes_a_history_the_products_reads_agree_with() -> None:
    # 400 batches a day apart with a 100-day window: the oldest 300 as retention leaves them.
    output = generate(batches=400, operators=10, interval=86400, pending=30, lagging=20, window_days=100)

    assert "bench_history: 400 batches" in output
    assert Operator.objects.filter(registered=True).count() == 10
    assert Batch.objects.count() == 400 == sum(rowcounts(prefix="batches").values())
    assert Batch.objects.filter(status=BatchStatus.PENDING).count() == 30
    assert BatchProgress.objects.count() == 400
    # Signatures only inside the window, and every signer of a kept batch is in its progress list.
    kept = set(Signature.objects.values_list("batch_identifier", flat=True))
    assert 90 <= len(kept) <= 101
    batch = Batch.objects.filter(status=BatchStatus.VERIFIED, identifier__in=kept).order_by("-id").first()
    assert batch is not None
    signers = set(
        Signature.objects.filter(batch_identifier=batch.identifier, status=SignatureStatus.VERIFIED)
        .exclude(source__startswith="198.51.100.")
        .values_list("operator_id", flat=True)
    )
    assert signers == set(batch.progress.signed_operator_ids)
    assert batch.progress.quorum_reached
    # Each verified signature was forwarded (one task per batch) and acknowledged.
    verified = Signature.objects.filter(status=SignatureStatus.VERIFIED).count()
    forwarded = (
        Signature.objects.filter(status=SignatureStatus.VERIFIED).values("batch_identifier").distinct()
    )
    assert RecoveryTask.objects.filter(kind=RecoveryKind.FORWARD).count() == forwarded.count()
    assert SignatureDelivery.objects.count() == verified
    # The lagging operator (left down) owes exactly the newest 20 pending batches.
    lagging = OperatorLiveness.objects.get(state="down").operator_id
    owed = operator_catchup_batches(operator_id=lagging)
    newest = list(Batch.objects.order_by("-created_block").values_list("identifier", flat=True)[:20])
    assert sorted(b.identifier for b in owed) == sorted(newest)
    # The real pending signatures verify with the operators' registered keys.
    pending = Signature.objects.filter(status=SignatureStatus.PENDING).count()
    assert pending > 0
    assert intake_sweep()["verified"] == pending
    assert not Signature.objects.filter(status=SignatureStatus.PENDING).exists()


def test_it_refuses_a_database_holding_data_unless_told_to_reset() -> None:
    batch_create(label="real")
    with pytest.raises(CommandError, match="--reset"):
        generate(batches=10, operators=3, pending=2, lagging=1)
    assert Batch.objects.count() == 1

    generate(batches=10, operators=3, pending=2, lagging=1, reset=True)
    assert Batch.objects.count() == 10
    assert not Batch.objects.filter(data_pointer__contains="real").exists()


def test_it_refuses_a_shape_it_cannot_make() -> None:
    with pytest.raises(CommandError, match="--lagging"):
        generate(batches=10, pending=2, lagging=5)
