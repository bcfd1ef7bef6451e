from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ledger.selectors import operator_stake_at_block, total_stake_at_block
from tests.factories import ETH, hex32, operator_create, stake_update

pytestmark = pytest.mark.django_db


def test_it_returns_the_stake_at_a_block_not_the_latest() -> None:
    operator = operator_create(label="a", stake=10 * ETH, registered_block=10)
    stake_update(operator_id=operator.operator_id, stake=20 * ETH, block_number=20)
    stake_update(operator_id=operator.operator_id, stake=30 * ETH, block_number=30)

    assert operator_stake_at_block(operator_id=operator.operator_id, block_number=9) == Decimal(0)
    assert operator_stake_at_block(operator_id=operator.operator_id, block_number=10) == Decimal(10 * ETH)
    assert operator_stake_at_block(operator_id=operator.operator_id, block_number=25) == Decimal(20 * ETH)
    assert operator_stake_at_block(operator_id=operator.operator_id, block_number=30) == Decimal(30 * ETH)
    assert operator_stake_at_block(operator_id=operator.operator_id, block_number=10**9) == Decimal(30 * ETH)


def test_it_takes_the_last_update_within_a_block_by_log_index() -> None:
    operator = operator_create(label="same-block", registered_block=10)
    stake_update(operator_id=operator.operator_id, stake=3 * ETH, block_number=40, log_index=7)
    stake_update(operator_id=operator.operator_id, stake=1 * ETH, block_number=40, log_index=2)

    assert operator_stake_at_block(operator_id=operator.operator_id, block_number=40) == Decimal(3 * ETH)
    assert total_stake_at_block(block_number=40) == Decimal(3 * ETH)


def test_it_ignores_removed_rows_and_other_quorums() -> None:
    operator = operator_create(label="reorged", stake=10 * ETH, registered_block=10)
    stake_update(operator_id=operator.operator_id, stake=50 * ETH, block_number=20, removed=True)
    stake_update(operator_id=operator.operator_id, stake=70 * ETH, block_number=21, quorum_number=1)

    assert operator_stake_at_block(operator_id=operator.operator_id, block_number=25) == Decimal(10 * ETH)
    assert total_stake_at_block(block_number=25) == Decimal(10 * ETH)


def test_it_accepts_an_upper_case_operator_id() -> None:
    operator = operator_create(label="case", stake=4 * ETH, registered_block=10)

    upper = operator.operator_id.upper().replace("0X", "0x")
    assert operator_stake_at_block(operator_id=upper, block_number=11) == Decimal(4 * ETH)


def test_it_returns_zero_for_an_unknown_operator_and_an_empty_ledger() -> None:
    assert operator_stake_at_block(operator_id=hex32("nobody"), block_number=100) == Decimal(0)
    assert total_stake_at_block(block_number=100) == Decimal(0)


def test_it_sums_every_operators_stake_at_a_block_in_one_query() -> None:
    a = operator_create(label="a", stake=10 * ETH, registered_block=10)
    b = operator_create(label="b", stake=20 * ETH, registered_block=15)
    operator_create(label="late", stake=40 * ETH, registered_block=50)
    stake_update(operator_id=a.operator_id, stake=11 * ETH, block_number=30)
    stake_update(operator_id=b.operator_id, stake=0, block_number=40)  # deregistration zeroes the stake

    assert total_stake_at_block(block_number=9) == Decimal(0)
    assert total_stake_at_block(block_number=12) == Decimal(10 * ETH)
    assert total_stake_at_block(block_number=20) == Decimal(30 * ETH)
    assert total_stake_at_block(block_number=35) == Decimal(31 * ETH)
    assert total_stake_at_block(block_number=45) == Decimal(11 * ETH)
    with CaptureQueriesContext(connection) as queries:
        assert total_stake_at_block(block_number=50) == Decimal(51 * ETH)
    assert len(queries) == 1
