"""Counts kept by the writes: every insert, update and delete of a counted table moves its keys, compaction
folds the rows without changing a count, and a truncate forgets the table's keys."""

from __future__ import annotations

import pytest
from django.db import connection

from alerts.models import Alert
from controlplane.models import RowCount
from controlplane.rowcounts import rowcounts, rowcounts_compact
from intake.models import Signature, SignatureStatus
from intake.selectors import operator_signature_counts
from ledger.models import Batch, BatchStatus
from recovery.models import RecoveryKind, RecoveryStatus, RecoveryTask
from tests.factories import ETH, batch_create, hex32, operator_create

pytestmark = pytest.mark.django_db


def scanned(model: type[Batch] | type[Signature], field: str = "status") -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in model.objects.values_list(field, flat=True):
        counts[value] = counts.get(value, 0) + 1
    return counts


def signature(batch: Batch, operator_id: str, n: int, status: str = SignatureStatus.PENDING) -> Signature:
    return Signature.objects.create(
        batch_identifier=batch.identifier,
        batch_merkle_root=batch.merkle_root,
        sender_address=batch.sender,
        operator_id=operator_id,
        signature_x=hex32(f"x{n}"),
        signature_y=hex32(f"y{n}"),
        status=status,
    )


def test_it_counts_batches_by_status_through_inserts_updates_and_deletes() -> None:
    batches = [batch_create(label=f"b{i}", created_block=10 + i) for i in range(5)]
    assert rowcounts(prefix="batches") == {"pending": 5}
    Batch.objects.filter(id__in=[b.id for b in batches[:3]]).update(status=BatchStatus.VERIFIED)
    Batch.objects.filter(id=batches[3].id).update(status=BatchStatus.ORPHANED)
    batches[4].delete()
    assert rowcounts(prefix="batches") == {"verified": 3, "orphaned": 1} == scanned(Batch)
    # An update that changes no counted column adds no row.
    rows = RowCount.objects.count()
    Batch.objects.update(data_pointer="http://127.0.0.1:9/other.json")
    assert RowCount.objects.count() == rows


def test_it_counts_signatures_per_operator_and_conflicting_ones() -> None:
    a = operator_create(label="a", stake=10 * ETH).operator_id
    b = operator_create(label="b", stake=10 * ETH).operator_id
    batch = batch_create(label="batch")
    first, second = signature(batch, a, 1), signature(batch, a, 2)
    signature(batch, b, 3)
    Signature.objects.filter(id__in=[first.id, second.id]).update(
        status=SignatureStatus.VERIFIED, conflicting=True
    )
    assert rowcounts(prefix="signatures") == {
        "verified": 2,
        "pending": 1,
        "conflicting": 2,
        f"operator:{a}:verified": 2,
        f"operator:{b}:pending": 1,
    }
    assert operator_signature_counts(operator_id=a) == {
        **{status: 0 for status in SignatureStatus.values},
        "verified": 2,
    }
    Signature.objects.filter(id=second.id).delete()
    assert rowcounts(prefix="signatures")["conflicting"] == 1
    assert rowcounts(prefix="signatures")["verified"] == 1 == scanned(Signature)["verified"]


def test_it_counts_recovery_tasks_by_kind_and_state_and_alerts_by_kind_and_state() -> None:
    from django.utils import timezone

    now = timezone.now()
    for n in range(3):
        RecoveryTask.objects.create(kind=RecoveryKind.FORWARD, subject=str(n), next_attempt_at=now)
    RecoveryTask.objects.filter(subject="0").update(status=RecoveryStatus.DONE)
    Alert.objects.create(kind="operator_down", subject="x", severity="warning", summary="s", opened_at=now)
    assert rowcounts(prefix="recovery_tasks") == {"forward:pending": 2, "forward:done": 1}
    assert rowcounts(prefix="alerts") == {"operator_down:open": 1}


def test_it_compacts_each_key_into_one_row_without_changing_a_count() -> None:
    for i in range(6):
        batch_create(label=f"b{i}", created_block=10 + i)
    Batch.objects.filter(created_block__lt=13).update(status=BatchStatus.VERIFIED)
    before = rowcounts(prefix="batches")
    assert RowCount.objects.filter(key__startswith="batches:").count() > 2
    assert rowcounts_compact() > 0
    assert rowcounts(prefix="batches") == before == {"pending": 3, "verified": 3}
    assert RowCount.objects.filter(key__startswith="batches:").count() == 2
    assert rowcounts_compact() == 0


@pytest.mark.django_db(transaction=True)
def test_it_forgets_a_truncated_tables_counts_and_no_other() -> None:
    batch = batch_create(label="b")
    operator = operator_create(label="a", stake=10 * ETH)
    signature(batch, operator.operator_id, 1)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE monitoring_signature CASCADE")
    assert rowcounts(prefix="signatures") == {}
    assert rowcounts(prefix="batches") == {"pending": 1}


def test_it_keeps_the_quorum_time_histogram_and_its_sum_by_the_writes() -> None:
    from api.metrics import quorum_histogram
    from progress.models import BatchProgress

    for i, ms in enumerate((1500, 7000, None)):
        BatchProgress.objects.create(batch=batch_create(label=f"q{i}", created_block=10 + i), quorum_ms=ms)
    BatchProgress.objects.filter(quorum_ms=1500).update(quorum_ms=900)

    sample_set = quorum_histogram()
    samples = {(s.name, s.labels.get("le")): s.value for s in sample_set.samples}
    assert samples[("controlplane_batch_quorum_seconds_bucket", "1")] == 1
    assert samples[("controlplane_batch_quorum_seconds_bucket", "5")] == 1
    assert samples[("controlplane_batch_quorum_seconds_bucket", "10")] == 2
    assert samples[("controlplane_batch_quorum_seconds_bucket", "+Inf")] == 2
    assert samples[("controlplane_batch_quorum_seconds_sum", None)] == pytest.approx(7.9)
