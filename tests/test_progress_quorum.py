"""The quorum rule every stage shares: percent of the stake at the task block, compared in integers."""

from __future__ import annotations

from decimal import Decimal

from django.test import override_settings

from progress.models import BatchProgress
from progress.quorum import quorum_threshold, stake_holds_quorum, stake_percent

ETH = 10**18


def test_it_holds_a_quorum_at_exactly_the_threshold():
    assert stake_holds_quorum(signed=Decimal(67 * ETH), total=Decimal(100 * ETH), threshold=67)


def test_it_refuses_a_share_that_would_round_up_to_the_threshold():
    # 66.99...%: a float percentage printed to two places says 67.00, the chain's integer check refuses it.
    total = Decimal(3 * ETH)
    signed = total * 67 / 100 - 1
    assert f"{stake_percent(part=signed, total=total):.2f}" == "67.00"
    assert not stake_holds_quorum(signed=signed, total=total, threshold=67)


def test_it_holds_no_quorum_without_stake():
    assert not stake_holds_quorum(signed=0, total=0, threshold=67)
    assert stake_percent(part=0, total=0) == 0.0


def test_it_reads_the_threshold_from_settings():
    with override_settings(QUORUM_THRESHOLD_PERCENTAGE=80):
        assert quorum_threshold() == 80
        assert not stake_holds_quorum(signed=79, total=100, threshold=quorum_threshold())


def test_it_judges_a_stored_progress_by_its_own_threshold():
    progress = BatchProgress(total_stake=Decimal(100), signed_stake=Decimal(70), threshold_percentage=75)
    assert not progress.quorum_reached
    progress.threshold_percentage = 70
    assert progress.quorum_reached
    assert progress.signed_percentage == 70.0
