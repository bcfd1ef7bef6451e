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


def test_it_gives_up_rather_than_sleep_past_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    # A clock of its own: on a loaded machine a real 5 ms sleep can take 50 ms, and the schedule is what is tested.
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    monkeypatch.setattr(time, "sleep", lambda seconds: now.__setitem__(0, now[0] + seconds))
    asked: list[float] = []

    def nothing() -> None:
        asked.append(round(now[0] - 100.0, 6))
        return None

    with pytest.raises(TimeoutError):
        poll_backoff(nothing, timeout=0.05)
    # At once, then 5, 10 and 20 ms apart; the next wait (40 ms) would end past the deadline, so it is not taken.
    assert asked == [0.0, 0.005, 0.015, 0.035]
    assert now[0] - 100.0 <= 0.05
