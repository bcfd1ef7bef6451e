"""The shared rate limit: a burst of up to N, then one hit every period / N, whatever the wall clock reads."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane import clients
from controlplane.clients import Rate, rate_check
from tests.redis_keys import redis_forget


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, settings: Any) -> list[float]:
    """The time the limiter reads, set by the test (a real clock can't be made to cross a minute on demand)."""
    now = [0.0]
    monkeypatch.setattr(clients.time, "time", lambda: now[0])
    redis_forget("rate:test:*")
    return now


def test_it_lets_a_burst_through_then_refuses_with_the_wait(clock: list[float]) -> None:
    clock[0] = 1_800_000_000.0
    rate = Rate.parse("3/min")
    assert [rate_check(key="test:a", rate=rate, fail_open=False) for _ in range(3)] == [None, None, None]
    assert rate_check(key="test:a", rate=rate, fail_open=False) == 20.0
    assert rate_check(key="test:b", rate=rate, fail_open=False) is None, "another key has its own allowance"


def test_it_does_not_let_twice_the_rate_through_across_a_minute(clock: list[float]) -> None:
    rate = Rate.parse("3/min")
    allowed = 0
    for i in range(8):  # 59.6 s .. 60.3 s: a fixed per-minute window let 3 + 3 through here
        clock[0] = 1_799_999_999.6 + i * 0.1
        allowed += rate_check(key="test:edge", rate=rate, fail_open=False) is None
    assert 1_800_000_000 % 60 == 0
    assert allowed == 3


def test_it_gives_back_one_hit_per_interval_and_refused_hits_spend_nothing(clock: list[float]) -> None:
    clock[0] = 1_800_000_000.0
    rate = Rate.parse("2/s")
    assert rate_check(key="test:c", rate=rate, fail_open=False) is None
    assert rate_check(key="test:c", rate=rate, fail_open=False) is None
    for _ in range(5):
        assert rate_check(key="test:c", rate=rate, fail_open=False) is not None
    clock[0] += 0.5
    assert rate_check(key="test:c", rate=rate, fail_open=False) is None, "half a second gives one hit back"
    assert rate_check(key="test:c", rate=rate, fail_open=False) is not None
