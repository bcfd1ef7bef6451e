"""The standby responder on a real chain: it answers through EigenLayer's NonSignerStakesAndSignature, treats an
answer by someone else as success, recognises its own replaced transaction, and records a refusal instead of
sending it."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from bls import keypair_from_secret
from controlplane.auth import api_token_create
from controlplane.models import TokenScope
from devnet import contracts
from devnet.contracts import ContractRevertError
from intake.models import Signature
from intake.verify import signatures_verify_batch
from ledger.models import Batch, BatchStatus
from recovery.jobs import run_recovery_task
from recovery.models import RecoveryKind, RecoveryStatus, RecoveryTask, ResponseTransaction
from recovery.services.tasks import recovery_task_request
from recovery.services.watch import standby_responses_request
from tests.chain_fixtures import Net, net_deploy, signed_response

pytestmark = pytest.mark.django_db

SIGNERS = (1, 2, 3)  # stakes 20 + 30 + 40 of 100: a quorum; operator 0 (10) does not sign


@pytest.fixture
def net(anvil: Any, settings: Any, tmp_path: Any) -> Net:
    net = net_deploy(anvil, operators=4)  # stakes 10, 20, 30, 40
    settings.DEVNET_FILE = tmp_path / "devnet.json"
    settings.AGGREGATOR_URL = None
    settings.CHAIN_RPC_URL = anvil.url
    settings.SERVICE_MANAGER_ADDRESS = net.service_manager
    settings.REGISTRY_ADDRESSES = [net.registry]
    settings.OPERATOR_STATE_RETRIEVER_ADDRESS = net.state["contracts"]["operator_state_retriever"]
    settings.AGGREGATOR_PRIVATE_KEY = net.state["accounts"]["aggregator"]["private_key"]
    settings.STANDBY_RECEIPT_WAIT = 10.0
    return net


def pending_batch(
    net: Net, client: Any, *, seed: int, signers: tuple[int, ...] = SIGNERS
) -> tuple[Batch, bytes]:
    """A task on chain, a block past its creation, ingested, with verified signatures of ``signers``."""
    root = net.create_task(seed=seed)
    net.anvil.rpc("evm_mine")  # checkSignatures needs taskCreatedBlock < block.number
    net.ingester().sync_once()
    for operator in signers:
        body = signed_response(net, root=root, operator=operator)
        answer = client.post("/api/v1/signatures", data=json.dumps(body), content_type="application/json")
        assert answer.status_code == 202, answer.content
    batch = Batch.objects.get(merkle_root="0x" + root.hex())
    signatures_verify_batch(batch_identifier=batch.identifier)
    return batch, root


def respond_task(batch: Batch) -> RecoveryTask:
    task, _ = recovery_task_request(kind=RecoveryKind.RESPOND, subject=batch.identifier, reason="test")
    return task


def run_again(task: RecoveryTask) -> RecoveryTask:
    """Run the task now (as the reconciler would once it is due) and return it as settled."""
    RecoveryTask.objects.filter(id=task.id, status=RecoveryStatus.PENDING).update(
        next_attempt_at=timezone.now()
    )
    run_recovery_task(task.id)
    return RecoveryTask.objects.get(id=task.id)


def verifications(net: Net, root: bytes) -> int:
    logs = net.w3.eth.get_logs(
        {
            "address": net.w3.to_checksum_address(net.service_manager),
            "fromBlock": 0,
            "topics": [contracts.event_topic("BatchVerified"), "0x" + root.hex()],
        }
    )
    return len(logs)


def test_it_answers_on_chain_with_eigenlayers_struct(net: Net, client: Any) -> None:
    batch, root = pending_batch(net, client, seed=1)
    task = run_again(respond_task(batch))
    assert task.status == RecoveryStatus.DONE, task.last_error
    assert task.result["answered_by"] == "standby"
    sent = ResponseTransaction.objects.get(batch_identifier=batch.identifier)
    assert sent.succeeded is True
    assert task.result["tx_hash"] == sent.tx_hash
    assert sent.sender == net.account("aggregator").address.lower()
    assert sent.fee_paid is not None
    assert sent.fee_paid > 0
    assert verifications(net, root) == 1
    net.ingester().sync_once()
    assert Batch.objects.get(id=batch.id).status == BatchStatus.VERIFIED


def test_it_counts_an_answer_by_the_aggregator_as_success(net: Net, client: Any) -> None:
    batch, root = pending_batch(net, client, seed=2)
    net.respond(root=root, signers=list(SIGNERS))
    task = run_again(respond_task(batch))
    assert task.status == RecoveryStatus.DONE
    assert task.result["answered_by"] == "other"
    assert not ResponseTransaction.objects.exists(), "nothing sent: the chain already had the answer"
    assert verifications(net, root) == 1


def test_it_races_the_aggregator_for_one_batch_with_one_response(net: Net, client: Any) -> None:
    batch, root = pending_batch(net, client, seed=3)
    task = respond_task(batch)
    start = threading.Barrier(2)
    aggregator: dict[str, Any] = {}

    def aggregator_answers() -> None:
        start.wait()
        try:
            aggregator["receipt"] = net.respond(root=root, signers=list(SIGNERS))
        except ContractRevertError as exc:
            aggregator["refused"] = exc.error_name
        except Exception as exc:  # the same key: its nonce may be taken by the standby's transaction
            aggregator["failed"] = str(exc)

    thread = threading.Thread(target=aggregator_answers)
    thread.start()
    start.wait()
    task = run_again(task)
    thread.join(60)
    for _ in range(3):  # a send that lost the nonce race is retried; the next attempt finds the answer
        if task.status != RecoveryStatus.PENDING:
            break
        task = run_again(task)
    assert task.status == RecoveryStatus.DONE, task.last_error
    assert verifications(net, root) == 1
    ours = ResponseTransaction.objects.filter(batch_identifier=batch.identifier, succeeded=True).count()
    theirs = int("receipt" in aggregator)
    assert ours + theirs == 1, (task.result, aggregator)
    assert task.result["answered_by"] == ("standby" if ours else "other")


def test_it_recognises_its_replaced_transaction_as_its_answer(net: Net, client: Any, settings: Any) -> None:
    batch, root = pending_batch(net, client, seed=4)
    settings.STANDBY_RECEIPT_WAIT = 0.5
    settings.STANDBY_BUMP_SECONDS = 0.2
    net.anvil.rpc("evm_setAutomine", [False])
    try:
        task = run_again(respond_task(batch))
        assert task.status == RecoveryStatus.PENDING
        assert "not mined yet" in task.last_error
        time.sleep(0.3)
        task = run_again(task)  # stalled past STANDBY_BUMP_SECONDS: replaced, same nonce, higher fees
        first, second = ResponseTransaction.objects.filter(batch_identifier=batch.identifier).order_by("id")
        assert first.nonce == second.nonce
        assert second.max_fee_per_gas >= first.max_fee_per_gas * 1125 / 1000
        assert second.priority_fee_per_gas > first.priority_fee_per_gas
        net.anvil.rpc("evm_mine")
    finally:
        net.anvil.rpc("evm_setAutomine", [True])
    task = run_again(task)
    assert task.status == RecoveryStatus.DONE, task.last_error
    assert task.result == {**task.result, "answered_by": "standby", "tx_hash": second.tx_hash}
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.mined_block, second.succeeded) == (None, True), "the replacement was mined, and is ours"
    assert verifications(net, root) == 1


def test_it_records_a_refused_response_and_does_not_send_it(net: Net, client: Any, settings: Any) -> None:
    batch, root = pending_batch(net, client, seed=5)
    # A signature stored as verified that is not one (a bug, or a corrupted row): the aggregate fails on chain.
    wrong = keypair_from_secret(int(net.state["operators"][1]["bls_secret"], 16)).sign(b"\x01" * 32).to_hex()
    Signature.objects.filter(
        batch_identifier=batch.identifier,
        operator_id=signed_response(net, root=root, operator=1)["operatorId"],
    ).update(signature_x=wrong["X"], signature_y=wrong["Y"])
    task = run_again(respond_task(batch))
    assert task.status == RecoveryStatus.CANCELLED
    assert "the simulated respondToTaskV2 reverts" in task.last_error
    assert task.result["revert"]
    assert task.result["signers"] == 3
    assert not ResponseTransaction.objects.exists()
    assert verifications(net, root) == 0
    settings.STANDBY_RESPONDER = True
    settings.STANDBY_AFTER_BLOCKS = 0
    settings.RECOVERY_STUCK_BLOCKS = 1
    for _ in range(3):
        net.anvil.rpc("evm_mine")
    net.ingester().sync_once()
    assert standby_responses_request(aggregator_reachable=False) == 0, "not again with the same signatures"


def test_it_shows_the_struct_and_the_simulation_in_a_dry_run(net: Net, client: Any) -> None:
    batch, _ = pending_batch(net, client, seed=6)
    user = User.objects.create_user("ops", is_staff=True)
    _, key = api_token_create(user=user, name="ops", scope=TokenScope.WRITE, created_by="test")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    answer = api.post(
        "/api/v1/recovery/responses", {"batch": batch.identifier, "dry_run": True}, format="json"
    )
    assert answer.status_code == 200, answer.content
    plan = answer.json()["plan"]
    assert plan["simulation"] == {"reverts": False}
    response = plan["response"]
    non_signer = keypair_from_secret(int(net.state["operators"][0]["bls_secret"], 16))
    assert response["nonSigners"] == ["0x" + non_signer.operator_id.hex()]
    struct = response["nonSignerStakesAndSignature"]
    assert struct["nonSignerPubkeys"] == [
        {"X": hex(non_signer.public_key_g1.x), "Y": hex(non_signer.public_key_g1.y)}
    ]
    assert len(struct["quorumApks"]) == 1
    assert len(struct["nonSignerStakeIndices"]) == 1
    assert len(struct["nonSignerStakeIndices"][0]) == 1
    assert answer.json()["outcome"].startswith(
        "dry run: the standby would answer with 90.0% of the stake signed"
    )
    assert not RecoveryTask.objects.filter(kind=RecoveryKind.RESPOND).exists()
