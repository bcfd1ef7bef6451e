"""Alert rules that read only Postgres: each opens its alert once, stays quiet while nothing changes, resolves once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from alerts.models import Alert, AlertKind, AlertSeverity, AlertState, WebhookEndpoint
from alerts.services import EvaluationResult, alerts_evaluate
from intake.models import Signature, SignatureStatus
from ledger.models import Batch, BatchStatus, IngestCursor, Operator
from liveness.models import OperatorState
from liveness.services import operator_liveness_record
from progress.services import batch_progress_refresh
from recovery.jobs import run_recovery_task
from recovery.models import RecoveryKind, RecoveryStatus, RecoveryTask
from recovery.services.tasks import recovery_task_request
from tests.factories import CHAIN_ID, ETH, SERVICE_MANAGER, batch_create, hex32, operator_create

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def nothing_outside(settings: Any, tmp_path: Any) -> None:
    """No devnet file, chain or aggregator leaks in from a developer's running stack."""
    settings.DEVNET_FILE = tmp_path / "devnet.json"
    settings.CHAIN_RPC_URL = None
    settings.AGGREGATOR_URL = None


@pytest.fixture(autouse=True)
def endpoint(db: None) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(name="ops", url="http://127.0.0.1:9/hook")


def sent(alert: Alert) -> list[str]:
    """The webhook events owed for ``alert`` (one row per endpoint and event)."""
    return sorted(alert.deliveries.values_list("event", flat=True))


def evaluate(kind: str, **kwargs: Any) -> EvaluationResult:
    return alerts_evaluate(kinds=[kind], **kwargs)


def assert_quiet(kind: str, capture: Any, **kwargs: Any) -> None:
    """Another evaluation with nothing changed: no row written, nothing sent, nothing queued for commit."""
    alerts, deliveries = Alert.objects.count(), sum(len(sent(a)) for a in Alert.objects.all())
    with capture() as callbacks:
        result = evaluate(kind, **kwargs)
    assert (result.opened, result.resolved) == ([], [])
    assert callbacks == []
    assert Alert.objects.count() == alerts
    assert sum(len(sent(a)) for a in Alert.objects.all()) == deliveries


def one_open(kind: str) -> Alert:
    return Alert.objects.get(kind=kind, state=AlertState.OPEN)


@pytest.fixture
def four_operators() -> list[Operator]:
    """Stakes 10, 20, 30, 40 (ETH) from block 10."""
    return [operator_create(label=f"op{i}", stake=(i + 1) * 10 * ETH) for i in range(4)]


def set_state(operator: Operator, state: OperatorState) -> None:
    operator_liveness_record(operator_id=operator.operator_id, state=state, reason=f"test: {state}")


def test_it_opens_batch_at_risk_once_and_resolves_when_enough_stake_is_back(
    four_operators: list[Operator], django_capture_on_commit_callbacks: Any
) -> None:
    batch = batch_create(created_block=100)
    set_state(four_operators[2], OperatorState.DOWN)
    set_state(four_operators[3], OperatorState.DOWN)
    batch_progress_refresh(batch_identifier=batch.identifier)

    with django_capture_on_commit_callbacks() as callbacks:
        result = evaluate(AlertKind.BATCH_AT_RISK)
    assert [a.subject for a in result.opened] == [batch.identifier]
    assert callbacks, "the webhook enqueue and the live update go out on commit"
    alert = one_open(AlertKind.BATCH_AT_RISK)
    assert alert.severity == AlertSeverity.CRITICAL
    assert alert.details["reachable_percent"] == 30.0
    assert sorted(alert.details["unsigned_down_operator_ids"]) == sorted(
        [four_operators[2].operator_id, four_operators[3].operator_id]
    )
    assert sent(alert) == ["firing"]
    assert_quiet(AlertKind.BATCH_AT_RISK, django_capture_on_commit_callbacks)

    set_state(four_operators[3], OperatorState.UP)  # 10 + 20 + 40 = 70% can sign again
    batch_progress_refresh(batch_identifier=batch.identifier)
    result = evaluate(AlertKind.BATCH_AT_RISK)
    assert [a.id for a in result.resolved] == [alert.id]
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED
    assert alert.resolved_at is not None
    assert alert.resolution == "enough live stake can sign it again"
    assert sent(alert) == ["firing", "resolved"]
    assert_quiet(AlertKind.BATCH_AT_RISK, django_capture_on_commit_callbacks)


def test_it_opens_batch_stalled_past_n_ingested_blocks_and_resolves_on_verification(
    settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.ALERT_BATCH_STALLED_BLOCKS = 20
    batch = batch_create(created_block=100)
    batch_create(created_block=100, verified_block=101)  # verified in time: never stalled
    cursor = IngestCursor.objects.create(
        chain_id=CHAIN_ID, address=SERVICE_MANAGER, block_number=120, block_hash=hex32("b120")
    )
    assert evaluate(AlertKind.BATCH_STALLED).opened == []

    IngestCursor.objects.filter(id=cursor.id).update(block_number=121)
    result = evaluate(AlertKind.BATCH_STALLED)
    assert [a.subject for a in result.opened] == [batch.identifier]
    alert = result.opened[0]
    assert alert.severity == AlertSeverity.WARNING
    assert alert.details["blocks_pending"] == 21
    assert_quiet(AlertKind.BATCH_STALLED, django_capture_on_commit_callbacks)

    Batch.objects.filter(id=batch.id).update(status=BatchStatus.VERIFIED, verified_block=125)
    result = evaluate(AlertKind.BATCH_STALLED)
    assert [a.id for a in result.resolved] == [alert.id]
    assert result.resolved[0].resolution == "batch verified on chain at block 125"
    assert sent(result.resolved[0]) == ["firing", "resolved"]


def test_it_opens_operator_down_with_its_stake_share_and_resolves_when_it_is_back(
    django_capture_on_commit_callbacks: Any,
) -> None:
    small = operator_create(label="small", stake=10 * ETH)
    big = operator_create(label="big", stake=50 * ETH)
    operator_create(label="rest", stake=40 * ETH)
    operator_create(label="unstaked", stake=0)
    set_state(small, OperatorState.DOWN)
    set_state(big, OperatorState.DOWN)
    set_state(Operator.objects.get(operator_id=hex32("operator-unstaked")), OperatorState.DOWN)

    result = evaluate(AlertKind.OPERATOR_DOWN)
    by_subject = {a.subject: a for a in result.opened}
    assert set(by_subject) == {small.operator_id, big.operator_id}, "an operator without stake is no alert"
    assert by_subject[small.operator_id].severity == AlertSeverity.WARNING
    assert by_subject[small.operator_id].details["stake_share_percent"] == 10.0
    assert by_subject[big.operator_id].severity == AlertSeverity.CRITICAL, "alone it blocks quorum"
    assert by_subject[big.operator_id].details["stake_share_percent"] == 50.0
    assert "50.0% of stake" in by_subject[big.operator_id].summary
    assert_quiet(AlertKind.OPERATOR_DOWN, django_capture_on_commit_callbacks)

    set_state(small, OperatorState.UP)
    Operator.objects.filter(id=big.id).update(registered=False)
    result = evaluate(AlertKind.OPERATOR_DOWN)
    resolutions = {a.subject: a.resolution for a in result.resolved}
    assert resolutions == {
        small.operator_id: "the operator is up again",
        big.operator_id: "the operator is no longer registered",
    }
    assert_quiet(AlertKind.OPERATOR_DOWN, django_capture_on_commit_callbacks)

    set_state(small, OperatorState.DOWN)  # down again: a new occurrence, a new alert
    result = evaluate(AlertKind.OPERATOR_DOWN)
    assert [a.subject for a in result.opened] == [small.operator_id]
    assert Alert.objects.filter(kind=AlertKind.OPERATOR_DOWN, subject=small.operator_id).count() == 2


def test_it_opens_quorum_impossible_below_the_threshold_of_online_stake(
    four_operators: list[Operator], django_capture_on_commit_callbacks: Any
) -> None:
    assert evaluate(AlertKind.QUORUM_IMPOSSIBLE).opened == [], "never-probed operators are no alarm"
    set_state(four_operators[0], OperatorState.UP)
    set_state(four_operators[1], OperatorState.DEGRADED)
    set_state(four_operators[2], OperatorState.DOWN)
    assert evaluate(AlertKind.QUORUM_IMPOSSIBLE).opened == [], "70% is online"

    set_state(four_operators[3], OperatorState.DOWN)
    result = evaluate(AlertKind.QUORUM_IMPOSSIBLE)
    assert len(result.opened) == 1
    alert = result.opened[0]
    assert (alert.subject, alert.severity) == ("", AlertSeverity.CRITICAL)
    assert alert.details["online_percent"] == 30.0
    assert_quiet(AlertKind.QUORUM_IMPOSSIBLE, django_capture_on_commit_callbacks)

    set_state(four_operators[2], OperatorState.UP)  # 60%: still short
    assert_quiet(AlertKind.QUORUM_IMPOSSIBLE, django_capture_on_commit_callbacks)
    set_state(four_operators[3], OperatorState.UP)
    result = evaluate(AlertKind.QUORUM_IMPOSSIBLE)
    assert [a.id for a in result.resolved] == [alert.id]
    assert result.resolved[0].resolution == "100.0% of stake is online again (quorum needs 67%)"


def signature(operator: Operator, batch: Batch, n: int, **fields: Any) -> Signature:
    return Signature.objects.create(
        batch_identifier=batch.identifier,
        batch_merkle_root=batch.merkle_root,
        sender_address=batch.sender,
        operator_id=operator.operator_id,
        signature_x=hex32(f"x{n}"),
        signature_y=hex32(f"y{n}"),
        **fields,
    )


def test_it_opens_invalid_signature_alerts_per_source_and_conflicts_per_operator_within_the_window(
    four_operators: list[Operator], settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.ALERT_SIGNATURE_WINDOW_SECONDS = 600
    named, doubled, honest = four_operators[:3]
    batch = batch_create(created_block=100)
    now = timezone.now()
    reason = "BLS signature does not verify against the operator's key"
    # A forger at 203.0.113.9 posts in the names of two operators; only verified signatures can conflict.
    for n, operator in enumerate((named, honest)):
        signature(
            operator,
            batch,
            n,
            status=SignatureStatus.INVALID,
            status_reason=reason,
            verified_at=now,
            source="203.0.113.9",
        )
    signature(doubled, batch, 2, status=SignatureStatus.VERIFIED, conflicting=True, verified_at=now)
    signature(doubled, batch, 3, status=SignatureStatus.VERIFIED, conflicting=True, verified_at=now)
    signature(honest, batch, 4, status=SignatureStatus.VERIFIED, verified_at=now)

    invalid = evaluate(AlertKind.INVALID_SIGNATURE).opened
    conflicting = evaluate(AlertKind.CONFLICTING_SIGNATURE).opened
    assert [(a.subject, a.details["count"]) for a in invalid] == [("203.0.113.9", 2)]
    assert invalid[0].details["operator_ids"] == sorted([named.operator_id, honest.operator_id])
    assert "invalid signatures from 203.0.113.9 naming 2 operator(s)" in invalid[0].summary
    assert reason in invalid[0].summary
    assert [(a.subject, a.details["submissions"]) for a in conflicting] == [(doubled.operator_id, 2)]
    assert_quiet(AlertKind.INVALID_SIGNATURE, django_capture_on_commit_callbacks)
    assert_quiet(AlertKind.CONFLICTING_SIGNATURE, django_capture_on_commit_callbacks)

    later = now + timedelta(seconds=601)
    assert [a.id for a in evaluate(AlertKind.INVALID_SIGNATURE, now=later).resolved] == [invalid[0].id]
    assert [a.id for a in evaluate(AlertKind.CONFLICTING_SIGNATURE, now=later).resolved] == [
        conflicting[0].id
    ]
    assert (
        Alert.objects.get(id=invalid[0].id).resolution
        == "no invalid signature from 203.0.113.9 in the last 10 min"
    )
    assert_quiet(AlertKind.INVALID_SIGNATURE, django_capture_on_commit_callbacks, now=later)


def test_it_opens_recovery_failing_after_n_attempts_and_resolves_when_the_task_ends(
    settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.ALERT_RECOVERY_FAILING_ATTEMPTS = 3
    settings.AGGREGATOR_URL = "http://127.0.0.1:9"  # nothing listens: every replay attempt fails
    batch = batch_create(created_block=100)
    task, _ = recovery_task_request(kind=RecoveryKind.REPLAY, subject=batch.identifier, requested_by="test")

    def attempt() -> None:
        RecoveryTask.objects.filter(id=task.id).update(next_attempt_at=timezone.now())
        assert run_recovery_task(task.id) == "retry"

    for _ in range(2):
        attempt()
    assert evaluate(AlertKind.RECOVERY_FAILING).opened == []
    attempt()
    result = evaluate(AlertKind.RECOVERY_FAILING)
    assert [a.subject for a in result.opened] == [str(task.id)]
    alert = result.opened[0]
    assert "aggregator unavailable" in alert.summary
    assert alert.details["attempts"] == 3
    assert_quiet(AlertKind.RECOVERY_FAILING, django_capture_on_commit_callbacks)

    Batch.objects.filter(id=batch.id).update(status=BatchStatus.VERIFIED, verified_block=130)
    RecoveryTask.objects.filter(id=task.id).update(next_attempt_at=timezone.now())
    assert run_recovery_task(task.id) == "cancel"
    result = evaluate(AlertKind.RECOVERY_FAILING)
    assert [a.id for a in result.resolved] == [alert.id]
    assert result.resolved[0].resolution.startswith("the task was cancelled: the batch is verified")
    assert RecoveryTask.objects.get(id=task.id).status == RecoveryStatus.CANCELLED


def test_it_keeps_a_kinds_alerts_as_they_are_when_its_rule_fails(
    four_operators: list[Operator], monkeypatch: pytest.MonkeyPatch
) -> None:
    set_state(four_operators[0], OperatorState.DOWN)
    alert = evaluate(AlertKind.OPERATOR_DOWN).opened[0]
    set_state(four_operators[0], OperatorState.UP)

    from alerts import rules

    def broken(ctx: Any) -> list[Any]:
        raise RuntimeError("rule bug")

    broken_rules = tuple(
        rules.Rule(r.kind, broken, r.resolution) if r.kind == AlertKind.OPERATOR_DOWN else r
        for r in rules.RULES
    )
    monkeypatch.setattr("alerts.services.RULES", broken_rules)
    result = evaluate(AlertKind.OPERATOR_DOWN)
    assert result.unknown == [AlertKind.OPERATOR_DOWN]
    assert result.resolved == []
    alert.refresh_from_db()
    assert alert.state == AlertState.OPEN, "a rule that cannot tell resolves nothing"


def test_it_gives_operators_never_seen_alive_a_start_up_grace_before_down_and_quorum_alerts(
    settings: Any,
) -> None:
    settings.ALERT_STARTUP_GRACE_SECONDS = 60
    starting = operator_create(label="starting", stake=50 * ETH)  # never answered yet
    flapped = operator_create(label="flapped", stake=20 * ETH)  # was up, now down
    operator_create(label="fine", stake=30 * ETH)
    set_state(starting, OperatorState.DOWN)
    set_state(flapped, OperatorState.UP)
    set_state(flapped, OperatorState.DOWN)

    down = evaluate(AlertKind.OPERATOR_DOWN)
    assert [a.subject for a in down.opened] == [flapped.operator_id], "a seen operator alerts at once"
    assert evaluate(AlertKind.QUORUM_IMPOSSIBLE).opened == [], "50 + 30 of 100 online while one starts up"

    # The grace runs out: the operator that never came up is down after all, and quorum is out of reach.
    later = timezone.now() + timedelta(seconds=61)
    assert [a.subject for a in evaluate(AlertKind.OPERATOR_DOWN, now=later).opened] == [starting.operator_id]
    assert len(evaluate(AlertKind.QUORUM_IMPOSSIBLE, now=later).opened) == 1
