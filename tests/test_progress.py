"""Quorum progress and at-risk, judged with stake at the batch's taskCreatedBlock."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from devnet import contracts
from intake.verify import signatures_verify_batch
from liveness.models import OperatorLiveness, OperatorState
from progress.models import BatchProgress, BatchProgressChange, BatchProgressChangeKind
from progress.services import batch_progress_refresh, batches_progress_refresh
from tests.chain_fixtures import net_deploy, signed_response

ETH = 10**18


def submit_and_verify(client, net, root, operators) -> str:
    for i in operators:
        body = signed_response(net, root=root, operator=i)
        assert (
            client.post(
                "/api/v1/signatures", data=json.dumps(body), content_type="application/json"
            ).status_code
            == 202
        )
    signatures_verify_batch(batch_identifier=body["batchIdentifierHash"])
    return str(body["batchIdentifierHash"])


def raise_first_operators_stake(net) -> None:
    """Operator 0's stake: 10 ETH -> 1000 ETH, from the next block on."""
    contracts.set_operator_stake(
        net.w3,
        registry=net.registry,
        owner=net.account("deployer"),
        operator_id=bytes.fromhex(net.state["operators"][0]["operator_id"][2:]),
        stake=1000 * ETH,
    )


@pytest.mark.django_db
def test_it_counts_stake_at_the_batch_block_although_stakes_change_later(client, anvil):
    net = net_deploy(anvil, operators=4)  # stakes 10, 20, 30, 40 ETH
    root = net.create_task(seed=31)
    raise_first_operators_stake(net)
    net.ingester().sync_once()

    identifier = submit_and_verify(client, net, root, [2, 3])

    progress = BatchProgress.objects.get(batch__identifier=identifier)
    assert progress.total_stake == 100 * ETH
    assert progress.signed_stake == 70 * ETH
    assert progress.quorum_reached
    assert progress.quorum_reached_at is not None
    assert round(progress.signed_percentage, 1) == 70.0
    assert progress.signed_operator_ids == sorted(net.state["operators"][i]["operator_id"] for i in (2, 3))
    assert set(progress.unsigned_operator_ids) == {net.state["operators"][i]["operator_id"] for i in (0, 1)}
    kinds = list(
        BatchProgressChange.objects.filter(batch_identifier=identifier).values_list("kind", flat=True)
    )
    assert kinds == [BatchProgressChangeKind.QUORUM_REACHED]


@pytest.mark.django_db
def test_it_flags_a_batch_at_risk_when_live_stake_cannot_reach_quorum_and_recovers(client, anvil):
    net = net_deploy(anvil, operators=4)
    root = net.create_task(seed=32)
    net.ingester().sync_once()
    ops = net.state["operators"]
    for i in (2, 3):
        OperatorLiveness.objects.create(
            operator_id=ops[i]["operator_id"], state=OperatorState.DOWN, since=timezone.now()
        )

    identifier = submit_and_verify(client, net, root, [0])
    progress = BatchProgress.objects.get(batch__identifier=identifier)
    assert progress.signed_stake == 10 * ETH
    assert progress.live_unsigned_stake == 20 * ETH
    assert progress.at_risk  # 10 + 20 < 67 of 100

    OperatorLiveness.objects.filter(operator_id=ops[3]["operator_id"]).update(state=OperatorState.UP)
    refreshed = batch_progress_refresh(batch_identifier=identifier)
    assert refreshed is not None
    assert not refreshed.at_risk  # 10 + 20 + 40 >= 67
    kinds = list(
        BatchProgressChange.objects.filter(batch_identifier=identifier)
        .order_by("id")
        .values_list("kind", flat=True)
    )
    assert kinds == [BatchProgressChangeKind.AT_RISK, BatchProgressChangeKind.RECOVERED]
    # Refreshing again with nothing changed appends nothing.
    batch_progress_refresh(batch_identifier=identifier)
    assert BatchProgressChange.objects.filter(batch_identifier=identifier).count() == 2


@pytest.mark.django_db
def test_it_serves_the_persisted_progress_in_the_batch_api(client, anvil):
    net = net_deploy(anvil, operators=4)
    root = net.create_task(seed=33)
    net.ingester().sync_once()
    identifier = submit_and_verify(client, net, root, [1, 3])
    client.force_login(User.objects.create_user("viewer"))
    progress = client.get(f"/api/v1/batches/{identifier}/").json()["progress"]
    assert progress["signed_stake"] == str(60 * ETH)
    assert progress["total_stake"] == str(100 * ETH)
    assert progress["signed_percentage"] == "60.0"
    assert progress["quorum_reached"] is False
    assert progress["at_risk"] is False
    assert len(progress["signers"]) == 2
    assert len(progress["non_signers"]) == 2


@pytest.mark.django_db
def test_it_does_not_flag_a_batch_at_risk_when_no_stake_was_registered_at_its_block():
    from tests.factories import batch_create

    batch = batch_create(label="before-any-operator")
    progress = batch_progress_refresh(batch_identifier=batch.identifier)
    assert progress is not None
    assert (progress.total_stake, progress.quorum_reached_at, progress.at_risk) == (0, None, False)
    assert not BatchProgressChange.objects.filter(batch_identifier=batch.identifier).exists()


@pytest.mark.django_db
def test_it_refreshes_many_batches_each_at_its_own_block_in_as_many_queries_as_one(client, anvil):
    net = net_deploy(anvil, operators=4)  # stakes 10, 20, 30, 40 ETH
    first = net.create_task(seed=34)
    raise_first_operators_stake(net)
    second = net.create_task(seed=35)
    net.ingester().sync_once()
    identifiers = [submit_and_verify(client, net, root, [2, 3]) for root in (first, second)]

    with CaptureQueriesContext(connection) as one:
        batches_progress_refresh(batch_identifiers=identifiers[:1])
    with CaptureQueriesContext(connection) as both:
        refreshed = batches_progress_refresh(batch_identifiers=identifiers)
    assert len(both.captured_queries) == len(one.captured_queries)

    before, after = (refreshed[identifier] for identifier in identifiers)
    assert (before.total_stake, before.signed_stake, before.quorum_reached) == (100 * ETH, 70 * ETH, True)
    assert (after.total_stake, after.signed_stake, after.quorum_reached) == (1090 * ETH, 70 * ETH, False)
    assert BatchProgress.objects.get(batch__identifier=identifiers[1]).total_stake == 1090 * ETH
