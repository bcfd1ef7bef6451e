"""The standby responder's planning, from Postgres alone: when it asks to answer, its settings, the staff API and
its alerts. Answering on a real chain is in test_standby_chain."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from alerts.models import AlertKind, AlertState
from alerts.services import alerts_evaluate
from controlplane.auth import api_token_create
from controlplane.models import TokenScope
from intake.models import Signature, SignatureStatus
from ledger.models import Batch, IngestCursor, Operator
from ledger.selectors import operators_registered_at_block
from progress.services import batch_progress_refresh
from recovery.aggregator import UNKNOWN_TASK
from recovery.models import RecoveryKind, RecoveryRun, RecoveryStatus, RecoveryTask
from recovery.services.watch import standby_responses_request
from tests.factories import CHAIN_ID, SERVICE_MANAGER, batch_create, chain_event, hex32, operator_create

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
RESPONSES = "/api/v1/recovery/responses"


@pytest.fixture(autouse=True)
def standby_on(settings: Any, tmp_path: Path) -> None:
    settings.DEVNET_FILE = tmp_path / "devnet.json"
    settings.CHAIN_RPC_URL = None
    settings.AGGREGATOR_URL = None
    settings.STANDBY_RESPONDER = True
    settings.RECOVERY_STUCK_BLOCKS = 10
    settings.STANDBY_AFTER_BLOCKS = 5


def head_at(block: int) -> None:
    IngestCursor.objects.update_or_create(
        chain_id=CHAIN_ID,
        address=SERVICE_MANAGER,
        defaults={"block_number": block, "block_hash": hex32(f"h{block}")},
    )


def signed(batch: Batch, *operators: Operator) -> None:
    for operator in operators:
        Signature.objects.create(
            batch_identifier=batch.identifier,
            batch_merkle_root=batch.merkle_root,
            sender_address=batch.sender,
            operator_id=operator.operator_id,
            signature_x=hex32(f"sx-{batch.identifier}-{operator.operator_id}"),
            signature_y=hex32(f"sy-{batch.identifier}-{operator.operator_id}"),
            status=SignatureStatus.VERIFIED,
        )
    batch_progress_refresh(batch_identifier=batch.identifier)


@pytest.fixture
def net() -> dict[str, Any]:
    """Operators of 10, 20 and 10 ETH; batch ``quorum`` signed by the first two (75%), ``short`` by the first."""
    a, b, c = (
        operator_create(label=label, stake=n * 10**18) for label, n in (("a", 10), ("b", 20), ("c", 10))
    )
    quorum = batch_create(label="quorum", created_block=100)
    short = batch_create(label="short", created_block=100)
    signed(quorum, a, b)
    signed(short, a)
    return {"operators": (a, b, c), "quorum": quorum, "short": short}


def responses() -> list[str]:
    return list(RecoveryTask.objects.filter(kind=RecoveryKind.RESPOND).values_list("subject", flat=True))


def test_it_answers_a_stuck_quorum_when_the_aggregator_is_unreachable(net: dict[str, Any]) -> None:
    head_at(114)  # 14 blocks: stuck (10) but not yet past STANDBY_AFTER_BLOCKS (5) more
    assert standby_responses_request(aggregator_reachable=False) == 0
    head_at(115)
    assert standby_responses_request(aggregator_reachable=False) == 1
    assert responses() == [net["quorum"].identifier], "never a batch without a quorum of verified signatures"
    assert standby_responses_request(aggregator_reachable=False) == 0, "one open task per batch"


def test_it_leaves_a_reachable_aggregator_alone_unless_it_said_it_does_not_know_the_task(
    net: dict[str, Any],
) -> None:
    head_at(200)
    assert standby_responses_request(aggregator_reachable=True) == 0
    replay = RecoveryTask.objects.create(
        kind=RecoveryKind.REPLAY, subject=net["quorum"].identifier, next_attempt_at=timezone.now(), result={}
    )
    assert standby_responses_request(aggregator_reachable=True) == 0, "a replay that was delivered"
    replay.result = {UNKNOWN_TASK: True}
    replay.save()
    assert standby_responses_request(aggregator_reachable=True) == 1
    assert responses() == [net["quorum"].identifier]


def test_it_does_nothing_when_the_standby_is_off(net: dict[str, Any], settings: Any) -> None:
    settings.STANDBY_RESPONDER = False
    head_at(200)
    assert standby_responses_request(aggregator_reachable=False) == 0
    assert responses() == []


def test_it_asks_again_after_a_refused_response_only_once_more_signatures_arrive(net: dict[str, Any]) -> None:
    head_at(200)
    quorum = net["quorum"]
    RecoveryTask.objects.create(
        kind=RecoveryKind.RESPOND,
        subject=quorum.identifier,
        status=RecoveryStatus.CANCELLED,
        next_attempt_at=timezone.now(),
        finished_at=timezone.now(),
        result={"revert": "InvalidQuorumThreshold(1, 2)", "signers": 2},
    )
    assert standby_responses_request(aggregator_reachable=False) == 0, (
        "the same signatures: it would revert again"
    )
    signed(quorum, net["operators"][2])
    assert standby_responses_request(aggregator_reachable=False) == 1


def test_it_knows_who_was_registered_at_a_block() -> None:
    a = operator_create(label="a", registered_block=10)
    b = operator_create(label="b", registered_block=20)
    chain_event(name="OperatorDeregistered", block_number=30, subject=a.operator_id, args={})
    chain_event(name="OperatorRegistered", block_number=40, subject=a.operator_id, args={})
    assert operators_registered_at_block(block_number=9) == set()
    assert operators_registered_at_block(block_number=25) == {a.operator_id, b.operator_id}
    assert operators_registered_at_block(block_number=30) == {b.operator_id}
    assert operators_registered_at_block(block_number=40) == {a.operator_id, b.operator_id}


def test_it_refuses_to_start_the_standby_without_the_key(tmp_path: Path) -> None:
    env = {**os.environ, "SECRET_KEY": "test", "STANDBY_RESPONDER": "1", "DEVNET_DIR": str(tmp_path)}
    env.pop("AGGREGATOR_PRIVATE_KEY", None)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    run = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    assert "STANDBY_RESPONDER=1 needs the aggregator's key" in run.stderr
    key_file = tmp_path / "key"
    key_file.write_text("not a key\n")
    run = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "check"],
        env={**env, "AGGREGATOR_PRIVATE_KEY_FILE": str(key_file)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    assert "is not a 32-byte hex private key" in run.stderr
    assert "not a key" not in run.stderr, "a key is never echoed"


@pytest.fixture
def staff() -> APIClient:
    user = User.objects.create_user("ops", is_staff=True)
    client = APIClient()
    _, key = api_token_create(user=user, name="ops", scope=TokenScope.WRITE, created_by="test")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def test_it_refuses_a_response_request_it_cannot_act_on(staff: APIClient, net: dict[str, Any]) -> None:
    answer = staff.post(RESPONSES, {"batch": "0x12"}, format="json")
    assert answer.status_code == 400
    assert answer.json()["field"] == "batch"
    answer = staff.post(RESPONSES, {"batch": hex32("nobody")}, format="json")
    assert answer.status_code == 400
    assert "no batch" in answer.json()["error"]
    # Nothing configured: the answer names every missing setting, and nothing is recorded.
    answer = staff.post(RESPONSES, {"batch": net["quorum"].identifier, "dry_run": True}, format="json")
    assert answer.status_code == 400
    assert "CHAIN_RPC_URL" in answer.json()["error"]
    assert "AGGREGATOR_PRIVATE_KEY_FILE" in answer.json()["error"]
    assert not RecoveryRun.objects.exists()


def test_it_skips_a_verified_batch_with_the_reason(staff: APIClient) -> None:
    done = batch_create(label="done", created_block=100, verified_block=104)
    answer = staff.post(RESPONSES, {"batch": done.identifier}, format="json")
    assert answer.status_code == 201
    run = answer.json()
    assert run["kind"] == "respond"
    assert run["outcome"].startswith("nothing to do: already verified on chain at block 104")
    assert run["tasks"] == []


def test_it_tells_of_a_batch_about_to_leave_its_window_with_a_quorum(
    net: dict[str, Any], settings: Any
) -> None:
    settings.RESPONSE_WINDOW_BLOCKS = 100
    settings.ALERT_WINDOW_CLOSING_BLOCKS = 20
    head_at(179)
    assert alerts_evaluate(kinds=[AlertKind.WINDOW_CLOSING]).opened == []
    head_at(180)
    opened = alerts_evaluate(kinds=[AlertKind.WINDOW_CLOSING]).opened
    assert [a.subject for a in opened] == [net["quorum"].identifier], "only the batch that holds a quorum"
    assert "leaves its window in 20 blocks" in opened[0].summary
    head_at(200)  # out of its window: lost, no longer "about to"
    resolved = alerts_evaluate(kinds=[AlertKind.WINDOW_CLOSING]).resolved
    assert [a.subject for a in resolved] == [net["quorum"].identifier]


def test_it_tells_when_the_standby_answered(net: dict[str, Any]) -> None:
    RecoveryTask.objects.create(
        kind=RecoveryKind.RESPOND,
        subject=net["quorum"].identifier,
        status=RecoveryStatus.DONE,
        next_attempt_at=timezone.now(),
        finished_at=timezone.now(),
        result={"answered_by": "other"},
    )
    assert alerts_evaluate(kinds=[AlertKind.STANDBY_ANSWERED]).opened == [], (
        "the aggregator answered: not told"
    )
    RecoveryTask.objects.create(
        kind=RecoveryKind.RESPOND,
        subject=net["short"].identifier,
        status=RecoveryStatus.DONE,
        next_attempt_at=timezone.now(),
        finished_at=timezone.now() - timedelta(minutes=5),
        result={"answered_by": "standby", "tx_hash": hex32("tx")},
    )
    opened = alerts_evaluate(kinds=[AlertKind.STANDBY_ANSWERED]).opened
    assert [a.subject for a in opened] == [net["short"].identifier]
    assert opened[0].state == AlertState.OPEN
