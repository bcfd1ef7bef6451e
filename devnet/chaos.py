"""``devnet chaos``: a reproducible schedule of faults (the same seed gives the same schedule) applied live."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devnet.components import aggregator_replace, component_running, component_start, component_stop
from devnet.state import load_state, state_path


@dataclass(frozen=True)
class ChaosEvent:
    at: float  # seconds after the start
    action: str  # "stop", "kill", "start", "replace-aggregator"
    component: str

    def describe(self) -> str:
        return f"t+{self.at:5.1f}s {self.action} {self.component}"


def chaos_schedule(*, seed: int, duration: float, operators: list[str]) -> list[ChaosEvent]:
    """Faults every 2-6 s: an operator stopped or killed for 3-10 s, the aggregator killed or replaced.

    Pure function of its arguments, so a failing run can be replayed exactly.
    """
    rng = random.Random(seed)
    events: list[ChaosEvent] = []
    t = rng.uniform(1.0, 3.0)
    while t < duration:
        roll = rng.random()
        if roll < 0.6 and operators:
            operator = rng.choice(operators)
            action = rng.choice(["stop", "kill"])
            back = min(t + rng.uniform(3.0, 10.0), duration)
            events += [ChaosEvent(t, action, operator), ChaosEvent(back, "start", operator)]
        elif roll < 0.8:
            back = min(t + rng.uniform(1.0, 5.0), duration)
            events += [ChaosEvent(t, "kill", "aggregator"), ChaosEvent(back, "start", "aggregator")]
        else:
            events.append(ChaosEvent(t, "replace-aggregator", "aggregator"))
        t += rng.uniform(2.0, 6.0)
    return sorted(events, key=lambda e: e.at)


def chaos_run(
    *, seed: int, duration: float, say: Callable[[str], object], path: Path | str | None = None
) -> list[ChaosEvent]:
    """Apply the schedule to the running devnet; anything still down at the end is started again."""
    target = state_path(path)
    state = load_state(target)
    operators = [op["name"] for op in state["operators"]]
    schedule = chaos_schedule(seed=seed, duration=duration, operators=operators)
    say(f"chaos: seed {seed}, {duration:g} s, {len(schedule)} events")
    started = time.monotonic()
    for event in schedule:
        delay = event.at - (time.monotonic() - started)
        if delay > 0:
            time.sleep(delay)
        _apply(event, path=target)
        say("chaos: " + event.describe())
    state = load_state(target)
    for name in [*operators, "aggregator"]:
        if not component_running(state, name):
            component_start(name=name, path=target)
            say(f"chaos: end: start {name}")
    return schedule


def _apply(event: ChaosEvent, *, path: Path) -> None:
    state = load_state(path)
    if event.action == "replace-aggregator":
        aggregator_replace(path=path)
    elif event.action == "start":
        if not component_running(state, event.component):
            component_start(name=event.component, path=path)
    else:
        component_stop(name=event.component, kill=event.action == "kill", path=path)
