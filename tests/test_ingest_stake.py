"""Stake at a task's block is what the registry said at that block, not the latest."""

from __future__ import annotations

import pytest

from devnet import contracts
from ledger.models import Batch
from ledger.selectors import operator_stake_at_block, total_stake_at_block
from tests.chain_fixtures import net_deploy


@pytest.mark.django_db
def test_it_reads_stake_at_the_tasks_block_not_the_latest(anvil):
    net = net_deploy(anvil)
    operator = net.state["operators"][0]
    original = int(operator["stake"])
    root = net.create_task(seed=1)
    contracts.set_operator_stake(
        net.w3,
        registry=net.registry,
        owner=net.account("deployer"),
        operator_id=bytes.fromhex(operator["operator_id"][2:]),
        stake=original * 5,
    )
    net.ingester().sync_once()

    batch = Batch.objects.get(merkle_root="0x" + root.hex())
    at_task = operator_stake_at_block(
        operator_id=operator["operator_id"], block_number=batch.task_created_block
    )
    latest = operator_stake_at_block(
        operator_id=operator["operator_id"], block_number=net.w3.eth.block_number
    )
    assert at_task == original
    assert latest == original * 5
    # And both agree with the chain's own history.
    assert at_task == contracts.stake_at_block(
        net.w3,
        registry=net.registry,
        operator_id=bytes.fromhex(operator["operator_id"][2:]),
        block_number=batch.task_created_block,
    )
    expected_total = sum(int(op["stake"]) for op in net.state["operators"])
    assert total_stake_at_block(block_number=batch.task_created_block) == expected_total
    assert total_stake_at_block(block_number=net.w3.eth.block_number) == expected_total + 4 * original
