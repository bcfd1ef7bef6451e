"""Forwarding with explicit ack and aggregator replay, against the real devnet aggregator on a real chain."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from devnet import contracts
from devnet.aggregator import AggregatorNode
from intake.models import Signature
from intake.verify import signatures_verify_batch
from ledger.models import Batch, BatchStatus
from recovery.management.commands.recovery import recovery_pass
from recovery.models import AggregatorBoot, RecoveryKind, RecoveryStatus, RecoveryTask, SignatureDelivery
from recovery.services.forwarding import forward_execute, replay_execute
from recovery.services.tasks import recovery_task_request
from tests.chain_fixtures import Net, net_deploy, signed_response


@pytest.fixture
def network(anvil, settings):
    net = net_deploy(anvil, operators=4)  # stakes 10, 20, 30, 40
    node = AggregatorNode(state=net.state)
    node.start()
    settings.AGGREGATOR_URL = node.url
    settings.AGGREGATOR_TIMEOUT = 2.0
    yield net, node
    node.stop()


def sign_and_verify(client, net: Net, root: bytes, operators: list[int]) -> str:
    for i in operators:
        body = signed_response(net, root=root, operator=i)
        response = client.post("/api/v1/signatures", data=json.dumps(body), content_type="application/json")
        assert response.status_code == 202
    signatures_verify_batch(batch_identifier=body["batchIdentifierHash"])
    return str(body["batchIdentifierHash"])


def verified_events(net: Net, root: bytes) -> int:
    logs = net.w3.eth.get_logs(
        {
            "fromBlock": 0,
            "toBlock": "latest",
            "address": net.w3.to_checksum_address(net.service_manager),
            "topics": [contracts.event_topic("BatchVerified"), "0x" + root.hex()],
        }
    )
    return len(logs)


def drive(net: Net, root: bytes, *, timeout: float = 20.0) -> None:
    """Run recovery passes (tasks executed in-process) until the batch is verified on chain, and ingest it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        RecoveryTask.objects.filter(status=RecoveryStatus.PENDING).update(next_attempt_at=timezone.now())
        recovery_pass(execute=True)
        if verified_events(net, root):
            net.ingester().sync_once()
            return
        time.sleep(0.2)
    tasks = list(
        RecoveryTask.objects.values_list("kind", "subject", "status", "attempts", "last_error", "result")
    )
    raise AssertionError(f"the batch was not verified on chain in time; tasks: {tasks}")


def wait_for_task(node: AggregatorNode, root: bytes, timeout: float = 10.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = requests.get(node.url + "/health", timeout=2).json()["tasks"]
        if any(t["batchMerkleRoot"] == "0x" + root.hex() for t in tasks):
            return
        time.sleep(0.1)
    raise AssertionError("the aggregator never picked up the task")


@pytest.mark.django_db
def test_it_forwards_verified_signatures_until_the_aggregator_responds_once(client, network):
    net, node = network
    root = net.create_task(seed=61)
    wait_for_task(node, root)
    net.ingester().sync_once()
    identifier = sign_and_verify(client, net, root, [1, 2, 3])  # 90% of stake

    drive(net, root)

    assert verified_events(net, root) == 1
    assert Batch.objects.get(identifier=identifier).status == BatchStatus.VERIFIED
    deliveries = SignatureDelivery.objects.filter(batch_identifier=identifier)
    assert deliveries.count() == 3
    assert {d.boot_id for d in deliveries} == {node.boot_id}
    # Once verified on chain, nothing about the batch is forwarded or replayed again.
    recovery_pass(execute=True)
    assert not RecoveryTask.objects.filter(status=RecoveryStatus.PENDING, kind=RecoveryKind.FORWARD).exists()


@pytest.mark.django_db
def test_it_retries_while_the_aggregator_is_down_and_replays_to_its_replacement(client, network, settings):
    net, node = network
    root = net.create_task(seed=62)
    wait_for_task(node, root)
    net.ingester().sync_once()
    recovery_pass()  # the control plane sees boot A
    sign_and_verify(client, net, root, [0, 1])  # 30%: no quorum yet
    drive_until = time.monotonic() + 10
    while SignatureDelivery.objects.count() < 2 and time.monotonic() < drive_until:
        RecoveryTask.objects.filter(status=RecoveryStatus.PENDING).update(next_attempt_at=timezone.now())
        recovery_pass(execute=True)
    assert SignatureDelivery.objects.filter(boot_id=node.boot_id).count() == 2

    node.stop()  # the aggregator crashes: its partial aggregate is gone
    identifier = sign_and_verify(client, net, root, [3])  # now 70% verified
    recovery_pass(execute=True)
    forward = RecoveryTask.objects.get(kind=RecoveryKind.FORWARD, status=RecoveryStatus.PENDING)
    assert "aggregator unavailable" in forward.last_error

    replacement = AggregatorNode(state=net.state)  # same URL, new boot id, knows nothing
    replacement.start()
    try:
        drive(net, root)
    finally:
        replacement.stop()
    assert verified_events(net, root) == 1
    assert AggregatorBoot.objects.count() == 2
    assert (
        SignatureDelivery.objects.filter(boot_id=replacement.boot_id, batch_identifier=identifier).count()
        == 3
    )
    replays = list(RecoveryTask.objects.filter(kind=RecoveryKind.REPLAY, subject=identifier).order_by("id"))
    assert len(replays) == 2, "one replay per aggregator boot"
    assert replacement.boot_id[:8] in replays[-1].reason


@pytest.mark.django_db
def test_a_forward_leaves_its_signature_to_the_open_replay_of_its_batch(client, network):
    net, node = network
    root = net.create_task(seed=63)
    wait_for_task(node, root)
    net.ingester().sync_once()
    recovery_pass()  # the control plane sees the boot
    identifier = sign_and_verify(client, net, root, [0])
    forward = RecoveryTask.objects.get(kind=RecoveryKind.FORWARD)
    replay, _ = recovery_task_request(kind=RecoveryKind.REPLAY, subject=identifier, urgent=True)

    waited = forward_execute(forward)
    assert (waited.action, waited.detail) == ("retry", "the batch's open replay sends it")
    assert not SignatureDelivery.objects.exists()
    assert replay_execute(replay).action == "done"
    after = forward_execute(forward)  # delivered by the replay: not sent again
    assert after.action == "done"
    assert "already acknowledged" in after.detail
    assert SignatureDelivery.objects.filter(boot_id=node.boot_id).count() == 1


@pytest.mark.django_db
def test_it_never_replays_a_batch_already_verified_on_chain(client, network):
    net, _node = network
    root = net.create_task(seed=63)
    net.ingester().sync_once()
    identifier = sign_and_verify(client, net, root, [2, 3])
    net.respond(root=root, signers=[2, 3])  # someone else answered on chain
    net.ingester().sync_once()
    assert Batch.objects.get(identifier=identifier).status == BatchStatus.VERIFIED

    task, _ = recovery_task_request(kind=RecoveryKind.REPLAY, subject=identifier, requested_by="test")
    RecoveryTask.objects.filter(id=task.id).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    recovery_pass(execute=True)

    task.refresh_from_db()
    assert task.status == RecoveryStatus.CANCELLED
    assert "nothing to replay" in task.last_error
    assert not SignatureDelivery.objects.exists()
    assert verified_events(net, root) == 1
    assert Signature.objects.filter(batch_identifier=identifier).count() == 2


@pytest.mark.django_db
def test_it_gives_back_every_signature_an_aggregator_dropped_when_its_task_expired(client, anvil, settings):
    """The worker-kill loss: signatures acknowledged by a boot are gone from it once the task expires (a late
    signature, here the one that makes quorum, arrives after the window); the batch must still verify."""
    net = net_deploy(anvil, operators=4)  # stakes 10, 20, 30, 40
    node = AggregatorNode(state={**net.state, "aggregator_task_window": 2.0})
    node.start()
    settings.AGGREGATOR_URL = node.url
    settings.AGGREGATOR_TIMEOUT = 2.0
    try:
        root = net.create_task(seed=64)
        wait_for_task(node, root)
        net.ingester().sync_once()
        identifier = sign_and_verify(client, net, root, [0, 1, 2])  # 60%: no quorum
        deadline = time.monotonic() + 10
        while SignatureDelivery.objects.count() < 3 and time.monotonic() < deadline:
            RecoveryTask.objects.filter(status=RecoveryStatus.PENDING).update(next_attempt_at=timezone.now())
            recovery_pass(execute=True)
        assert SignatureDelivery.objects.filter(boot_id=node.boot_id).count() == 3

        def expired() -> bool:
            return any(
                t["expired"] for t in node.health()["tasks"] if t["batchMerkleRoot"] == "0x" + root.hex()
            )

        deadline = time.monotonic() + 10
        while not expired() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert expired(), "the aggregator dropped the task and the three signatures it held"

        sign_and_verify(client, net, root, [3])  # the late one: 100% verified with the other three
        drive(net, root)
        assert verified_events(net, root) == 1
        replay = RecoveryTask.objects.get(
            kind=RecoveryKind.REPLAY,
            subject=identifier,
            reason__contains="had dropped the task (task_expired)",
        )
        assert replay.status == RecoveryStatus.DONE
        # The late one (40%) and, the largest first, one acknowledged before the expiry (30%): a quorum, which
        # the late one alone is not, so the response on chain holds a signature the aggregator had dropped.
        assert replay.result["sent"] == 2
    finally:
        node.stop()


@pytest.mark.django_db
def test_it_forwards_each_verifier_pass_of_a_batch_in_one_task_even_while_another_runs(client, network):
    net, node = network
    root = net.create_task(seed=64)
    wait_for_task(node, root)
    net.ingester().sync_once()
    recovery_pass()  # the control plane sees the boot (and would replay the batch: as if that were done)
    RecoveryTask.objects.filter(kind=RecoveryKind.REPLAY).update(status=RecoveryStatus.DONE)
    identifier = sign_and_verify(client, net, root, [0, 1])
    (first,) = RecoveryTask.objects.filter(kind=RecoveryKind.FORWARD)
    signatures = list(Signature.objects.order_by("id").values_list("id", flat=True))
    assert first.subject == f"{identifier}:{signatures[0]}"
    # The first pass's task is running (a worker holds it) when a second pass verifies another signature: that
    # one gets a task of its own, not lost behind the running one.
    RecoveryTask.objects.filter(id=first.id).update(status=RecoveryStatus.RUNNING)
    sign_and_verify(client, net, root, [2])
    second = RecoveryTask.objects.get(kind=RecoveryKind.FORWARD, status=RecoveryStatus.PENDING)
    assert second.subject == f"{identifier}:{max(Signature.objects.values_list('id', flat=True))}"

    outcome = forward_execute(second)  # sends every signature of the batch this boot has not acknowledged
    assert (outcome.action, outcome.result) == ("done", {"sent": 3, "boot_id": node.boot_id})
    assert SignatureDelivery.objects.filter(boot_id=node.boot_id, batch_identifier=identifier).count() == 3
    again = forward_execute(first)
    assert (again.action, again.result) == ("done", {"sent": 0})


@pytest.mark.django_db
def test_it_asks_once_per_batch_for_what_the_aggregator_has_not_acknowledged(client, network):
    from recovery.services.watch import signatures_forward_request

    net, node = network
    roots = [net.create_task(seed=65), net.create_task(seed=66)]
    for root in roots:
        wait_for_task(node, root)
    net.ingester().sync_once()
    recovery_pass()
    RecoveryTask.objects.filter(kind=RecoveryKind.REPLAY).update(status=RecoveryStatus.DONE)
    identifiers = [sign_and_verify(client, net, root, [0, 1]) for root in roots]
    RecoveryTask.objects.filter(kind=RecoveryKind.FORWARD).delete()  # as if those requests were lost

    assert signatures_forward_request() == 2
    assert signatures_forward_request() == 0, "asking again while they are open is a no-op"
    firsts = {
        i: min(Signature.objects.filter(batch_identifier=i).values_list("id", flat=True)) for i in identifiers
    }
    assert set(RecoveryTask.objects.filter(kind=RecoveryKind.FORWARD).values_list("subject", flat=True)) == {
        f"{i}:{first}" for i, first in firsts.items()
    }
    for task in RecoveryTask.objects.filter(kind=RecoveryKind.FORWARD):
        assert forward_execute(task).action == "done"
    RecoveryTask.objects.filter(kind=RecoveryKind.FORWARD).update(status=RecoveryStatus.DONE)
    assert signatures_forward_request() == 0, "nothing owed: nothing asked"


@pytest.mark.django_db
def test_it_replays_the_largest_stakes_until_the_aggregator_holds_a_quorum(client, network):
    """A restarted aggregator verifies every pending batch's signatures at once: a replay sends what reaches the
    quorum, the largest stake first, and leaves the rest to forwarding."""
    net, node = network
    root = net.create_task(seed=65)
    wait_for_task(node, root)
    net.ingester().sync_once()
    recovery_pass()  # the control plane sees the boot
    identifier = sign_and_verify(client, net, root, [0, 1, 2, 3])  # stakes 10, 20, 30, 40
    replay, _ = recovery_task_request(kind=RecoveryKind.REPLAY, subject=identifier, urgent=True)

    outcome = replay_execute(replay)

    assert outcome.action == "done", outcome.detail
    assert (outcome.result or {}).get("sent") == 2
    assert "a quorum of the stake (70%); 2 left to forwarding" in outcome.detail
    largest = {signed_response(net, root=root, operator=i)["operatorId"] for i in (2, 3)}
    delivered = set(
        SignatureDelivery.objects.filter(boot_id=node.boot_id).values_list(
            "signature__operator_id", flat=True
        )
    )
    assert delivered == largest
    drive(net, root)
    assert verified_events(net, root) == 1
