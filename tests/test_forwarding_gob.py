"""Forwarding over Go net/rpc (AGGREGATOR_PROTOCOL=gob) to an unmodified Go aggregator: a reply of 0 is a
delivery, a reply of 1 is not, and a connection the aggregator reset means it may have restarted, so every
pending batch is replayed to it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django_rq
import pytest

from controlplane.worker import PersistentWorker
from intake.models import Signature
from intake.verify import signatures_verify_batch
from ledger.models import Batch
from recovery.aggregator import aggregator_disconnect
from recovery.models import AggregatorBoot, RecoveryKind, RecoveryTask, SignatureDelivery
from recovery.services.forwarding import replay_execute, signature_deliver
from recovery.services.tasks import recovery_task_enqueue
from recovery.services.watch import aggregator_watch
from tests.chain_fixtures import Net, net_deploy, signed_response
from tests.golang import GoAggregator

pytestmark = pytest.mark.django_db


@pytest.fixture
def verified(anvil: Any, client: Any) -> tuple[Net, list[dict[str, Any]]]:
    """A batch with two verified signatures in the ledger (not yet a quorum, so it stays pending)."""
    net = net_deploy(anvil, operators=4)  # stakes 10, 20, 30, 40
    root = net.create_task(seed=31)
    net.ingester().sync_once()
    bodies = [signed_response(net, root=root, operator=i) for i in (0, 1)]
    for body in bodies:
        answer = client.post("/api/v1/signatures", data=json.dumps(body), content_type="application/json")
        assert answer.status_code == 202
    signatures_verify_batch(batch_identifier=bodies[0]["batchIdentifierHash"])
    return net, bodies


@pytest.fixture
def gob(settings: Any) -> Iterator[Any]:
    settings.AGGREGATOR_PROTOCOL = "gob"
    settings.AGGREGATOR_TIMEOUT = 5.0
    settings.AGGREGATOR_CALL_TIMEOUT = 10.0
    yield settings
    aggregator_disconnect()


def _standard(body: dict[str, Any]) -> dict[str, Any]:
    """A signed response as the Go aggregator prints what it received (coordinates as 32-byte hex)."""
    point = {k: "0x" + int(v, 16).to_bytes(32, "big").hex() for k, v in body["blsSignature"].items()}
    return {**body, "blsSignature": point}


def test_it_counts_a_reply_of_zero_as_delivered_to_the_watched_boot(
    go_programs: dict[str, Path], gob: Any, verified: tuple[Net, list[dict[str, Any]]]
) -> None:
    _, bodies = verified
    node = GoAggregator(go_programs["aggregator"], reply=0)
    try:
        gob.AGGREGATOR_URL = node.address
        boot = aggregator_watch()
        assert boot is not None
        assert boot.startswith("gob-")
        assert aggregator_watch() is None, "the same connection: the same boot"

        signature = Signature.objects.get(operator_id=bodies[0]["operatorId"])
        batch = Batch.objects.get(identifier=signature.batch_identifier)
        outcome = signature_deliver(signature=signature, batch=batch)
        assert outcome.action == "done", outcome.detail
        assert node.received() == _standard(bodies[0])
        assert SignatureDelivery.objects.get(signature=signature).boot_id == boot
    finally:
        node.stop()


def test_it_counts_a_reply_of_one_as_not_delivered(
    go_programs: dict[str, Path], gob: Any, verified: tuple[Net, list[dict[str, Any]]]
) -> None:
    _, bodies = verified
    node = GoAggregator(go_programs["aggregator"], reply=1)
    try:
        gob.AGGREGATOR_URL = node.address
        aggregator_watch()
        signature = Signature.objects.get(operator_id=bodies[1]["operatorId"])
        outcome = signature_deliver(signature=signature, batch=Batch.objects.get())
        assert outcome.action == "retry"
        assert "dropped" in outcome.detail
        assert not SignatureDelivery.objects.exists()
    finally:
        node.stop()


def test_it_replays_every_pending_batch_when_the_aggregator_connection_was_reset(
    go_programs: dict[str, Path], gob: Any, verified: tuple[Net, list[dict[str, Any]]]
) -> None:
    _, bodies = verified
    first = GoAggregator(go_programs["aggregator"], reply=0)
    gob.AGGREGATOR_URL = first.address
    try:
        old_boot = aggregator_watch()
    finally:
        first.stop()  # the aggregator's process dies: whatever it held is gone
    assert aggregator_watch() is None, "unreachable: nothing to conclude yet"

    second = GoAggregator(go_programs["aggregator"], reply=0)
    try:
        gob.AGGREGATOR_URL = second.address
        new_boot = aggregator_watch()
        assert new_boot not in (None, old_boot)
        assert set(AggregatorBoot.objects.values_list("boot_id", flat=True)) == {old_boot, new_boot}
        replay = RecoveryTask.objects.get(kind=RecoveryKind.REPLAY)
        assert replay.subject == bodies[0]["batchIdentifierHash"]

        outcome = replay_execute(replay)
        assert outcome.action == "done", outcome.detail
        assert outcome.result == {"sent": 2, "boot_id": new_boot}
        received = [second.received(), second.received()]
        assert sorted(received, key=lambda r: r["operatorId"]) == sorted(
            (_standard(b) for b in bodies), key=lambda r: r["operatorId"]
        )
        assert SignatureDelivery.objects.filter(boot_id=new_boot).count() == 2
    finally:
        second.stop()


@pytest.mark.django_db(transaction=True)
def test_it_keeps_one_connection_per_worker_across_forward_jobs(
    go_programs: dict[str, Path], gob: Any, verified: tuple[Net, list[dict[str, Any]]], client: Any
) -> None:
    """The worker runs jobs in its own process (no fork per job): its connection outlives each forward job."""
    net, bodies = verified
    node = GoAggregator(go_programs["aggregator"], reply=0)
    try:
        gob.AGGREGATOR_URL = node.address
        queue = django_rq.get_queue("default")
        worker = django_rq.get_worker("default")
        assert isinstance(worker, PersistentWorker)
        # The first pass's forward job sends both of its signatures; a second pass verifies a third signature of
        # the batch (60% of stake: still pending), and its own forward job sends that one.
        (first,) = RecoveryTask.objects.filter(kind=RecoveryKind.FORWARD)
        queue.empty()
        recovery_task_enqueue(task_id=first.id, attempts=first.attempts, kind=first.kind)
        worker.work(burst=True)
        third = signed_response(net, root=bytes.fromhex(bodies[0]["batchMerkleRoot"][2:]), operator=2)
        answer = client.post("/api/v1/signatures", data=json.dumps(third), content_type="application/json")
        assert answer.status_code == 202
        signatures_verify_batch(batch_identifier=third["batchIdentifierHash"])
        second = RecoveryTask.objects.filter(kind=RecoveryKind.FORWARD).exclude(id=first.id).get()
        queue.empty()
        recovery_task_enqueue(task_id=second.id, attempts=second.attempts, kind=second.kind)
        worker.work(burst=True)
        received = [node.received()["operatorId"] for _ in range(3)]
        assert sorted(received) == sorted(b["operatorId"] for b in [*bodies, third])
        assert SignatureDelivery.objects.count() == 3
        assert [
            t.result["sent"] for t in RecoveryTask.objects.filter(kind=RecoveryKind.FORWARD).order_by("id")
        ] == [
            2,
            1,
        ]
        assert node.connections() == 2, "one for both jobs, and one for asking"
    finally:
        node.stop()
