"""``devnet chaos``: reproducible schedules of faults (the same seed gives the same schedule).

``chaos_schedule``/``chaos_run`` apply operator and aggregator faults to the running devnet (``--seed N``);
``suite_schedule`` is the chaos suite's schedule over every component (``--seeds``, run by ``chaos_suite``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
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


# --- the suite's schedule ------------------------------------------------------------------------------

FAULT_KINDS: dict[str, tuple[str, ...]] = {
    "devnet": (
        "operator",
        "stake-down",
        "aggregator-crash",
        "aggregator-replace",
        "aggregator-outage",
        # Killed and never started again: from then on, the control plane's standby responder answers every batch.
        "aggregator-gone",
    ),
    "control-plane": ("cp-kill",),
    "infra": (
        "redis-flush",
        "redis-restart",
        "postgres-restart",
        "postgres-crash",
        "rpc-refuse",
        "rpc-error",
        "reorg",
    ),
}
FAULT_GROUPS = ("all", *FAULT_KINDS)
CONTROL_PLANE_PROCESSES = (
    "cp-ingest",
    "cp-verifier",
    "cp-prober",
    "cp-recovery",
    "cp-alerts",
    "cp-worker",
    "cp-worker-2",
    "cp-worker-ops",
    "cp-rpc",
    "cp-web",
)
OPERATORS = 5
BATCH_INTERVAL = 3.0
TASK_WINDOW = 15.0  # the aggregator forgets a task after this (upstream: 100 s)
RETRY_WINDOW = 10.0  # direct operators give up after this (10 tries, 1 s apart)
CONFIRMATIONS = 3  # the ingester's depth: every reorg is shallower


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the faults start
    kind: str
    target: str = ""
    lasts: float = 0.0  # seconds until it heals (0: a moment, like a flush or a restart)
    mode: str = ""  # stop or kill; refuse or error; the reorg depth

    def describe(self) -> str:
        parts = [f"t+{self.at:5.1f}s", self.kind]
        if self.target:
            parts.append(self.target)
        if self.mode:
            parts.append(self.mode)
        if self.lasts:
            parts.append(f"for {self.lasts:.1f}s")
        return " ".join(parts)


def fault_kinds(group: str) -> tuple[str, ...]:
    if group == "all":
        return tuple(kind for kinds in FAULT_KINDS.values() for kind in kinds)
    if group not in FAULT_KINDS:
        raise ValueError(f"--faults must be one of {', '.join(FAULT_GROUPS)}, not {group!r}")
    return FAULT_KINDS[group]


def suite_schedule(*, seed: int, duration: float, faults: str = "all") -> list[Fault]:
    """Every fault kind of the group at least once (each control-plane process killed once), plus as many
    random extra ones as the duration holds, at times spread over the run. A pure function of its arguments."""
    rng = random.Random(f"avs-controlplane/chaos/{seed}/{faults}")
    kinds = fault_kinds(faults)
    plan: list[tuple[str, str]] = []
    for kind in kinds:
        plan += [(kind, p) for p in CONTROL_PLANE_PROCESSES] if kind == "cp-kill" else [(kind, "")]
    plan += [(rng.choice(kinds), "") for _ in range(int(duration // 15))]
    rng.shuffle(plan)
    operators = [f"operator-{i}" for i in range(1, OPERATORS + 1)]
    largest = operators[-2:]  # stakes 10..50: the two largest hold 60%, more than a third
    schedule = []
    for i, (kind, target) in enumerate(plan):
        at = 1.0 + (duration - 2.0) * (i + rng.random()) / len(plan)
        mode, lasts = "", 0.0
        if kind == "operator":
            target, mode, lasts = rng.choice(operators), rng.choice(["stop", "kill"]), rng.uniform(3, 10)
        elif kind == "stake-down":  # across several batches
            target, mode, lasts = "+".join(largest), rng.choice(["stop", "kill"]), rng.uniform(12, 20)
        elif kind == "aggregator-crash":
            target, lasts = "aggregator", rng.uniform(1, 5)
        elif kind == "aggregator-replace":
            target = "aggregator"
        elif kind == "aggregator-outage":  # longer than the operators' retries and the task window
            target, lasts = "aggregator", rng.uniform(TASK_WINDOW + 3, TASK_WINDOW + 10)
        elif kind == "cp-kill":
            target = target or rng.choice(CONTROL_PLANE_PROCESSES)
        elif kind in ("rpc-refuse", "rpc-error"):
            lasts = rng.uniform(3, 8)
        elif kind == "reorg":
            mode = f"depth {rng.randint(1, CONFIRMATIONS - 1)}"
        elif kind == "aggregator-gone":
            target, mode = "aggregator", "for good"
        at = max(0.5, min(at, duration - lasts))  # every fault heals by the end of the run
        schedule.append(Fault(at=round(at, 1), kind=kind, target=target, lasts=round(lasts, 1), mode=mode))
    return sorted(_aggregator_gone_last(schedule, duration=duration), key=lambda f: (f.at, f.kind, f.target))


def _aggregator_gone_last(schedule: list[Fault], *, duration: float) -> list[Fault]:
    """The aggregator goes for good only after every other aggregator fault has healed (a healing would start it
    again), so each still happens once."""
    gone = [f for f in schedule if f.kind == "aggregator-gone"]
    if not gone:
        return schedule
    rest = [f for f in schedule if f.kind != "aggregator-gone"]  # it goes once: a second draw is dropped
    others = [f.at + f.lasts for f in rest if f.kind.startswith("aggregator-")]
    at = round(min(max([gone[0].at, *(end + 0.5 for end in others)]), duration), 1)
    return [*rest, replace(gone[0], at=at)]


def parse_seeds(text: str) -> list[int]:
    """``1-50``, ``17`` or ``1,4,9-12``."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ValueError(
                f"--seeds takes numbers and ranges such as 1-50 or 3,7,9-12, not {text!r}"
            ) from None
        if first < 0 or last < first:
            raise ValueError(f"--seeds: {part!r} is not a range of seeds")
        seeds += range(first, last + 1)
    return list(dict.fromkeys(seeds))
