"""Recovery speed: an aggregator crash with 20 pending batches, against the no-fault quorum time of the same run.

The scenarios' devnet (5 operators over gob, one batch every 3 s) with the control plane in front of the
aggregator. Times are when this process first saw each event on chain (polled every 0.1 s), so both figures
carry the same small error.

1. No fault: the median, over a few batches, of NewBatchV3 seen -> BatchVerified seen (X).
2. The batcher is paused until every batch so far is verified, so nothing else is pending; the aggregator is
   killed (SIGKILL) and the batcher resumes until 20 batches are created. Once the control plane holds a quorum
   of verified signatures for each (all it can do without an aggregator), the batcher is paused again (exactly
   20 pending) and the aggregator restarted. T runs from the moment the new aggregator answers its health check
   to the last of the 20 BatchVerified: how long the crash lasted, and how long a Python process takes to
   start, are the fault's and not the recovery's, while noticing the new boot (up to one recovery interval Y)
   and replaying are.

Goal: T <= 2X + Y, printed as the ratio (T - Y) / X <= 2.0.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devnet.anvil import free_port
from devnet.batcher import PAUSE_FILE
from devnet.components import component_start, component_stop
from devnet.scenarios import BATCH_INTERVAL, ChainWatch, scenario_config, scenario_network, wait_ready
from devnet.stack import answers
from devnet.state import state_path

GOAL = 2.0


def recovery_ratio(*, recovered: float, quorum: float, interval: float) -> float:
    """(T - Y) / X: at most 2.0 exactly when T <= 2X + Y."""
    return (recovered - interval) / quorum


@dataclass
class ChainClock:
    """When this process first saw each batch (created after block ``after``) and its BatchVerified."""

    chain: Any  # ChainWatch, or anything with its outcomes(after=...)
    after: int
    now: Callable[[], float] = time.monotonic
    created: dict[str, float] = field(default_factory=dict)
    verified: dict[str, float] = field(default_factory=dict)
    blocks: dict[str, int] = field(default_factory=dict)

    def poll(self) -> None:
        outcomes = self.chain.outcomes(after=self.after)
        seen = self.now()
        for batch in outcomes:
            self.created.setdefault(batch.identifier, seen)
            self.blocks.setdefault(batch.identifier, batch.created_block)
            if not batch.lost:
                self.verified.setdefault(batch.identifier, seen)

    def batches(self, *, after: int = -1) -> list[str]:
        """Batches created after block ``after``, oldest first."""
        return sorted((i for i, b in self.blocks.items() if b > after), key=lambda i: (self.blocks[i], i))

    def pending(self) -> list[str]:
        return [i for i in self.batches() if i not in self.verified]

    def quorum_times(self, identifiers: list[str]) -> list[float]:
        return [self.verified[i] - self.created[i] for i in identifiers]

    def wait(self, what: str, done: Callable[[], bool], *, timeout: float, every: float = 0.1) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if done():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"recovery bench: {what} did not happen within {timeout:g} s")
            time.sleep(every)


def _holding_quorum(identifiers: list[str]) -> int:
    """How many of these batches the control plane holds a quorum of verified signatures for."""
    from progress.models import BatchProgress

    return BatchProgress.objects.filter(
        batch__identifier__in=identifiers, quorum_reached_at__isnull=False
    ).count()


def _recovery_profile(*, up_wall: float) -> str:
    """Where the control plane's part went, in seconds after the restarted aggregator answered: when the recovery
    loop saw its new boot, and the replay and forward tasks settled since."""
    from django.db.models import Count, Max

    from recovery.models import AggregatorBoot, RecoveryTask

    up = datetime.fromtimestamp(up_wall, tz=UTC)
    seen = (
        AggregatorBoot.objects.filter(first_seen_at__gte=up).values_list("first_seen_at", flat=True).first()
    )
    parts = [f"new boot seen +{seen.timestamp() - up_wall:.2f} s" if seen else "new boot not seen"]
    for kind in ("replay", "forward"):
        row = RecoveryTask.objects.filter(kind=kind, updated_at__gte=up).aggregate(
            n=Count("id"), last=Max("updated_at")
        )
        if row["n"]:
            parts.append(
                f"{row['n']} {kind} tasks settled, the last +{row['last'].timestamp() - up_wall:.2f} s"
            )
    return "; ".join(parts)


@dataclass(frozen=True)
class RecoveryResult:
    pending: int
    quorum_median: float
    interval: float
    crash_to_all: float  # N: the crash to the last BatchVerified
    crash_to_up: float  # M: the crash to the new aggregator answering
    up_to_first: float
    profile: str

    @property
    def recovered(self) -> float:  # T
        return self.crash_to_all - self.crash_to_up

    @property
    def ratio(self) -> float:
        return recovery_ratio(recovered=self.recovered, quorum=self.quorum_median, interval=self.interval)


def bench_recovery(
    *, pending: int = 20, baseline: int = 5, say: Callable[[str], object] = print
) -> RecoveryResult:
    from django.conf import settings

    config = scenario_config(
        name="recovery-bench",
        direct=False,
        control_plane_url=f"http://127.0.0.1:{free_port()}",
        wire="gob",
        control_plane_rpc=f"127.0.0.1:{free_port()}",
    )
    # The batcher's pause switch: a file the batcher looks for before each batch, left behind by an earlier run.
    pause = state_path().parent / "batches" / PAUSE_FILE
    pause.unlink(missing_ok=True)
    with scenario_network(config=config, say=lambda line: say(f"recovery: {line}")) as (state, control_plane):
        assert control_plane is not None
        interval = float(control_plane.env["RECOVERY_INTERVAL"])
        wait_ready(state)
        chain = ChainWatch(state)
        clock = ChainClock(chain=chain, after=chain.head())
        clock.poll()

        # 1. No fault: the first batch warms every process up and is left out.
        wanted = baseline + 1
        clock.wait(
            f"{wanted} no-fault batches verified",
            lambda: (
                len(clock.batches()) >= wanted and all(i in clock.verified for i in clock.batches()[:wanted])
            ),
            timeout=wanted * BATCH_INTERVAL * 3 + 60,
        )
        pause.touch()
        clock.wait("every no-fault batch verified", lambda: not clock.pending(), timeout=60)
        quorum = statistics.median(clock.quorum_times(clock.batches()[1:wanted]))
        say(f"recovery: no-fault quorum time of {baseline} batches: median {quorum:.2f} s")

        # 2. The crash, then 20 batches the control plane holds quorums for, none of which can be answered.
        crash_block = chain.head()
        component_stop(name="aggregator", kill=True)
        crashed_at = time.monotonic()
        pause.unlink()
        say(f"recovery: aggregator killed (SIGKILL); waiting for {pending} batches")
        clock.wait(
            f"{pending} batches created",
            lambda: len(clock.batches(after=crash_block)) >= pending,
            timeout=pending * BATCH_INTERVAL * 2 + 60,
        )
        pause.touch()
        batches = clock.batches(after=crash_block)
        clock.wait(
            f"a quorum of verified signatures for {len(batches)} batches",
            lambda: _holding_quorum(batches) == len(batches),
            timeout=60,
        )
        clock.poll()
        assert clock.pending() == batches, (
            "only the batches created while the aggregator was down are pending"
        )

        component_start(name="aggregator")
        health = str(state["aggregator"]["url"]) + "/health"
        deadline = time.monotonic() + 60
        while not answers(health):
            if time.monotonic() > deadline:
                raise TimeoutError("recovery bench: the restarted aggregator never answered")
            time.sleep(0.02)
        up_at, up_wall = time.monotonic(), time.time()
        say(f"recovery: aggregator answering again {up_at - crashed_at:.1f} s after the crash")
        clock.wait(
            f"all {len(batches)} batches verified",
            lambda: all(i in clock.verified for i in batches),
            timeout=180,
        )
        last = max(clock.verified[i] for i in batches)
        first = min(clock.verified[i] for i in batches)
        profile = _recovery_profile(up_wall=up_wall)
        pause.unlink()
        say(f"recovery: logs in {Path(settings.DEVNET_FILE).parent / 'logs'}")
        return RecoveryResult(
            pending=len(batches),
            quorum_median=quorum,
            interval=interval,
            crash_to_all=last - crashed_at,
            crash_to_up=up_at - crashed_at,
            up_to_first=first - up_at,
            profile=profile,
        )


def bench_recovery_report(result: RecoveryResult) -> None:
    print(
        f"recovery: {result.pending} batches pending at the aggregator crash, all verified "
        f"{result.crash_to_all:.1f} s after it (restart after {result.crash_to_up:.1f} s)"
    )
    print(
        f"recovery: T = {result.recovered:.2f} s from the restarted aggregator answering to the last "
        f"BatchVerified (first after {result.up_to_first:.2f} s); {result.profile}"
    )
    print(
        f"recovery: no-fault quorum time median X {result.quorum_median:.2f} s; recovery interval Y "
        f"{result.interval:g} s; ratio (T - Y) / X = {result.ratio:.2f} (goal <= {GOAL:.1f}, i.e. T <= 2X + Y)"
    )
