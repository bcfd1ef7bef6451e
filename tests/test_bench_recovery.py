"""The recovery bench's bookkeeping: first sightings on chain, and the ratio its goal is checked with."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from devnet.scenarios import BatchOutcome
from tests.benchmarks.recovery import ChainClock, recovery_ratio


@dataclass
class FakeChain:
    batches: list[BatchOutcome] = field(default_factory=list)

    def outcomes(self, *, after: int = -1) -> list[BatchOutcome]:
        return [b for b in self.batches if b.created_block > after]


def ticks(*values: float) -> Iterator[float]:
    yield from values


def test_the_clock_keeps_when_each_batch_and_its_verification_were_first_seen() -> None:
    chain = FakeChain([BatchOutcome("0xold", created_block=9, verified_block=10), BatchOutcome("0xa", 11)])
    clock = ChainClock(chain=chain, after=10, now=ticks(1.0, 2.0, 3.5).__next__)
    clock.poll()
    chain.batches[1].verified_block = 12
    chain.batches.append(BatchOutcome("0xb", 13))
    clock.poll()
    clock.poll()  # nothing new: the first sightings stay

    assert clock.batches() == ["0xa", "0xb"]  # the batch before block 10 is not this run's
    assert clock.batches(after=11) == ["0xb"]
    assert clock.pending() == ["0xb"]
    assert clock.quorum_times(["0xa"]) == [1.0]
    assert clock.created["0xb"] == 2.0


def test_the_ratio_is_two_exactly_when_recovery_takes_twice_the_quorum_time_plus_one_interval() -> None:
    assert recovery_ratio(recovered=2 * 1.5 + 0.5, quorum=1.5, interval=0.5) == pytest.approx(2.0)
    assert recovery_ratio(recovered=17.2, quorum=1.5, interval=0.5) > 2.0
