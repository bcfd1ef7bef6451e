"""Waiting for a receipt: asked at once, then soon, then ever less often, and never past the deadline."""

from __future__ import annotations

import time

import pytest

from chain.transactions import POLL_FIRST, POLL_LONGEST, poll_backoff


def test_it_returns_what_is_found_and_asks_ever_less_often(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    answers = iter([None] * 7 + ["receipt"])

    assert poll_backoff(lambda: next(answers), timeout=60) == "receipt"
    assert slept[0] == POLL_FIRST
    assert slept == sorted(slept), "never sooner than the time before"
    assert max(slept) == POLL_LONGEST


def test_it_gives_up_at_the_deadline() -> None:
    asked: list[float] = []

    def nothing() -> None:
        asked.append(time.monotonic())
        return None

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        poll_backoff(nothing, timeout=0.05)
    assert asked[-1] - started <= 0.05
    assert len(asked) >= 3, "asked at once, then after 5 ms, then 10 ms"
