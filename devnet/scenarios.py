"""``devnet scenario``: a named fault scenario over a fixed number of batches, counting what is lost.

Run on a fresh devnet of 5 operators (stakes 10..50: any two of the largest three hold > 1/3). Timings are
scaled down from upstream's (operators retry 10 times 1 s apart instead of 10 s; the aggregator drops a task
after 15 s instead of 100 s) so a scenario takes about a minute; the failure modes are the same.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
import requests
from django.conf import settings

from chain import AdaptiveRange, ChainClient, fetch_logs
from chain.abi import TOPICS, batch_identifier, decode_log
from devnet.anvil import free_port
from devnet.components import aggregator_replace, component_start, component_stop, logs_dir
from devnet.network import DevnetConfig, devnet_down, devnet_up
from devnet.stack import CONTROL_PLANE_ENV, DEFAULT_WORKERS, ControlPlane, answers, standby_env
from devnet.state import state_path

BATCH_INTERVAL = 3.0
TASK_WINDOW = 15.0
DIRECT_RETRY_INTERVAL = 1.0


@dataclass
class BatchOutcome:
    identifier: str
    created_block: int
    merkle_root: str = ""
    verified_block: int | None = None
    verifications: int = 0  # BatchVerified events for it: exactly one is right

    @property
    def lost(self) -> bool:
        return self.verified_block is None


@dataclass
class ScenarioSummary:
    batches: list[BatchOutcome] = field(default_factory=list)

    @property
    def created(self) -> int:
        return len(self.batches)

    @property
    def verified(self) -> int:
        return sum(1 for b in self.batches if not b.lost)

    @property
    def lost(self) -> int:
        return sum(1 for b in self.batches if b.lost)


class ChainWatch:
    """What the chain itself says about batches: the source of truth no control-plane process writes."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.client = ChainClient(state["rpc_url"], max_attempts=3, backoff_base=0.1)
        self.service_manager = state["contracts"]["service_manager"]

    def head(self) -> int:
        return self.client.block_number()

    def outcomes(self, *, after: int = -1) -> list[BatchOutcome]:
        """Batches created after block ``after``, oldest first, with their verifications.

        Read from the block after ``after``: a batch's BatchVerified comes after its NewBatchV3, so nothing of these
        batches is older, and a watcher polling every 0.1 s (the recovery bench) does not decode the whole chain
        each time, on the cores it measures.
        """
        start, head = max(after + 1, 0), self.client.block_number()
        if start > head:
            return []
        # The chain stage's log walk: chunks that shrink when the node refuses a range, no block skipped.
        chunks = fetch_logs(
            self.client,
            addresses=[self.service_manager],
            topics=[[TOPICS["NewBatchV3"], TOPICS["BatchVerified"]]],
            from_block=start,
            to_block=head,
            window=AdaptiveRange(initial=100_000),
        )
        logs = [log for _, _, chunk in chunks for log in chunk]
        batches: dict[str, BatchOutcome] = {}
        for log in logs:
            event = decode_log(log.topics, log.data)
            if event is None:
                continue
            identifier = batch_identifier(event.args["batchMerkleRoot"], event.args["senderAddress"])
            if event.name == "NewBatchV3":
                batches[identifier] = BatchOutcome(
                    identifier=identifier,
                    created_block=log.block_number,
                    merkle_root=str(event.args["batchMerkleRoot"]).lower(),
                )
            elif identifier in batches:
                batches[identifier].verified_block = log.block_number
                batches[identifier].verifications += 1
        return sorted((b for b in batches.values() if b.created_block > after), key=lambda b: b.created_block)


def _wait_for_batches(
    chain: ChainWatch, count: int, *, after: int, timeout: float = 120.0
) -> list[BatchOutcome]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batches = chain.outcomes(after=after)
        if len(batches) >= count:
            return batches
        time.sleep(0.2)
    raise TimeoutError(f"fewer than {count} batches were created within {timeout:g} s")


def wait_ready(state: dict[str, Any], timeout: float = 60.0) -> None:
    """Until the aggregator and every operator answer healthy: batches before that prove nothing."""
    urls = [state["aggregator"]["url"] + "/health"] + [
        op["socket"] + "/eigen/node/health" for op in state["operators"]
    ]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(answers(url) for url in urls):
            return
        time.sleep(0.2)
    raise TimeoutError("the devnet's operators and aggregator did not all become healthy")


def _aggregator_holds_partial(state: dict[str, Any]) -> bool:
    """The aggregator holds a task with some signatures but below quorum: mid-quorum."""
    try:
        health = requests.get(state["aggregator"]["url"] + "/health", timeout=1).json()
    except (requests.RequestException, ValueError):
        return False
    return any(
        task["signers"]
        and not task["responded"]
        and int(task["signedStake"]) * 100 < int(task["totalStake"]) * 67
        for task in health.get("tasks", [])
    )


def _wait_mid_quorum(state: dict[str, Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _aggregator_holds_partial(state):
            return
        time.sleep(0.02)
    raise TimeoutError("the aggregator never held a partial aggregate")


def _wait_for_running_recovery(timeout: float = 15.0) -> bool:
    """Until a worker holds a recovery task (so a kill lands mid-job); False if none was seen."""
    from recovery.models import RecoveryStatus, RecoveryTask

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if RecoveryTask.objects.filter(status=RecoveryStatus.RUNNING).exists():
            return True
        time.sleep(0.01)
    return False


def _recovery_counts(*, since: datetime) -> str:
    """How much recovery work the control plane did in this scenario, by kind."""
    from django.db.models import Count

    from recovery.models import RecoveryStatus, RecoveryTask

    rows = RecoveryTask.objects.filter(created_at__gte=since).values("kind", "status").annotate(n=Count("id"))
    done = {r["kind"]: r["n"] for r in rows if r["status"] == RecoveryStatus.DONE}
    standby = RecoveryTask.objects.filter(
        created_at__gte=since, kind="respond", status=RecoveryStatus.DONE, result__answered_by="standby"
    ).count()
    return (
        f"{done.get('replay', 0)} replays, {done.get('catchup', 0)} catch-ups, "
        f"{done.get('forward', 0)} forwards acknowledged, {standby} answered by the standby"
    )


CONTROL_PLANE_SCENARIOS = ("redis-flush", "worker-kill", "ingest-down")
SCENARIOS = (
    "no-fault",
    "operators-down",
    "aggregator-crash",
    "aggregator-replace",
    "aggregator-gone",
    *CONTROL_PLANE_SCENARIOS,
)
# Scenarios where the control plane answers on chain itself, as the aggregator's standby (STANDBY_RESPONDER).
STANDBY_SCENARIOS = ("aggregator-gone",)


def scenario_config(
    *, name: str, direct: bool, control_plane_url: str, wire: str, control_plane_rpc: str
) -> DevnetConfig:
    """The scenarios' devnet: 5 operators, short windows and retries (see the module's docstring)."""
    return DevnetConfig(
        operators=5,
        seed=f"scenario-{name}",
        block_time=1.0,
        batch_interval=BATCH_INTERVAL,
        direct=direct,
        control_plane_url=control_plane_url,
        wire=wire,
        control_plane_rpc=control_plane_rpc,
        task_window=TASK_WINDOW,
        direct_retry_interval=DIRECT_RETRY_INTERVAL,
    )


@contextmanager
def scenario_network(
    *, config: DevnetConfig, say: Callable[[str], object], standby: bool = False
) -> Iterator[tuple[dict[str, Any], ControlPlane | None]]:
    """A fresh devnet and, unless ``config.direct``, the control plane in front of its aggregator (with the
    standby responder if asked); yields (devnet state, control plane) and stops both, by PID, after."""
    state = devnet_up(config=config)
    control_plane: ControlPlane | None = None
    try:
        if not config.direct:
            extra = standby_env(state, logs_dir(state_path())) if standby else {}
            control_plane = ControlPlane(
                url=config.control_plane_url,
                logs=logs_dir(state_path()),
                env={**os.environ, **CONTROL_PLANE_ENV, "DEVNET_FILE": str(state_path()), **extra},
                rpc_address=config.control_plane_rpc if config.wire == "gob" else None,
            )
            control_plane.start()
            say(f"control plane up at {config.control_plane_url}")
        yield state, control_plane
    finally:
        if control_plane is not None:
            control_plane.stop()
        devnet_down()


def scenario_run(
    *,
    name: str,
    direct: bool,
    batches: int,
    control_plane_url: str,
    say: Callable[[str], object],
    wire: str = "gob",
    control_plane_rpc: str | None = None,
) -> ScenarioSummary:
    # Over gob the operators send to the control plane's aggregator_rpc: on a free port unless given.
    config = scenario_config(
        name=name,
        direct=direct,
        control_plane_url=control_plane_url,
        wire=wire,
        control_plane_rpc=control_plane_rpc or f"127.0.0.1:{free_port()}",
    )
    say(
        f"scenario {name}: {batches} batches, operators send over {wire} to "
        f"{'the aggregator' if direct else control_plane_url}"
    )
    if direct and name in CONTROL_PLANE_SCENARIOS:
        raise ValueError(
            f"scenario {name} injects a fault into the control plane: it cannot run with --direct"
        )
    scenario_started = datetime.now(tz=UTC)
    with scenario_network(config=config, say=say, standby=name in STANDBY_SCENARIOS) as (
        state,
        control_plane,
    ):
        chain = ChainWatch(state)
        wait_ready(state)
        ready = chain.head()
        _wait_for_batches(chain, 1, after=ready)
        fault_ended: float | None = None
        if name == "operators-down":
            # 40 + 50 of 150 stake: more than a third is down for the next batches.
            for operator in ("operator-4", "operator-5"):
                component_stop(name=operator)
            say("fault: operator-4 and operator-5 (60% of stake) down")
            _wait_for_batches(chain, min(4, batches), after=ready)
            for operator in ("operator-4", "operator-5"):
                component_start(name=operator)
            say("fault healed: operator-4 and operator-5 back up")
            fault_ended = time.monotonic()
        elif name in ("aggregator-crash", "aggregator-replace"):
            _wait_for_batches(chain, 2, after=ready)
            _wait_mid_quorum(state)
            if name == "aggregator-crash":
                component_stop(name="aggregator", kill=True)
                say("fault: aggregator killed (SIGKILL) mid-quorum")
                time.sleep(2.0)
                component_start(name="aggregator")
                say("fault healed: aggregator restarted (new boot id)")
                fault_ended = time.monotonic()
            else:
                # The old process is gone at once (as when a host is replaced): its partial aggregates with it.
                aggregator_replace(kill_old=True)
                say("fault: aggregator replaced mid-quorum (new boot id, same key)")
                fault_ended = time.monotonic()
        elif name == "aggregator-gone":
            _wait_for_batches(chain, 2, after=ready)
            _wait_mid_quorum(state)
            component_stop(name="aggregator", kill=True)
            say(
                "fault: aggregator killed (SIGKILL) mid-quorum, for good"
                + ("" if direct else "; the control plane's standby responder answers instead")
            )
            fault_ended = time.monotonic()
        elif name == "redis-flush" and control_plane is not None:
            _wait_for_batches(chain, 2, after=ready)
            # The control plane's database only: the server may be shared (the test suite's own database is on
            # it), and FLUSHALL would wipe what belongs to others. The control plane keeps all it has in this one.
            redis.Redis.from_url(settings.REDIS_URL).flushdb()
            say("fault: Redis FLUSHDB of the control plane's database mid-flight (every queued job is gone)")
            fault_ended = time.monotonic()
        elif name == "worker-kill" and control_plane is not None:
            _wait_for_batches(chain, 2, after=ready)
            mid_job = _wait_for_running_recovery()
            for worker in DEFAULT_WORKERS:
                control_plane.stop_one(worker, kill=True)
            say(
                "fault: every RQ worker of the default queue killed (SIGKILL)"
                + (" mid-job" if mid_job else "")
            )
            time.sleep(2.0)
            for worker in DEFAULT_WORKERS:
                control_plane.start_one(worker)
            say("fault healed: RQ workers restarted")
            fault_ended = time.monotonic()
        elif name == "ingest-down" and control_plane is not None:
            control_plane.stop_one("cp-ingest")
            say("fault: ingester stopped")
            _wait_for_batches(chain, min(4, batches), after=ready)
            control_plane.start_one("cp-ingest")
            say("fault healed: ingester restarted")
            fault_ended = time.monotonic()
        # The batcher keeps running (it serves the batches' data); only the first ``batches`` count.
        created = _wait_for_batches(chain, batches, after=ready, timeout=batches * BATCH_INTERVAL * 4 + 60)
        created_at = time.monotonic()
        wanted = {b.identifier for b in created[:batches]}
        # Long enough for every retry and the aggregator's window to run out: what is not verified now is lost.
        # Through the control plane, recovery (catch-up, replay) gets as long again.
        grace = TASK_WINDOW + 10 * DIRECT_RETRY_INTERVAL + 5.0 + (0.0 if direct else 60.0)
        say(f"all {batches} batches created; waiting {grace:g} s for verifications")
        deadline = time.monotonic() + grace
        all_verified_at: float | None = None
        while time.monotonic() < deadline:
            outcomes = [b for b in chain.outcomes() if b.identifier in wanted]
            if all(not b.lost for b in outcomes):
                all_verified_at = time.monotonic()
                break
            time.sleep(0.25)
        summary = ScenarioSummary(batches=[b for b in chain.outcomes() if b.identifier in wanted])
        for b in summary.batches:
            verdict = f"verified in block {b.verified_block}" if not b.lost else "lost"
            say(f"batch {b.identifier[:18]}… created in block {b.created_block}: {verdict}")
        if all_verified_at is not None:
            since = fault_ended if fault_ended is not None else created_at
            label = "the fault ended" if fault_ended is not None else f"batch {batches} was created"
            say(f"time: last batch verified {all_verified_at - since:.1f} s after {label}")
        if control_plane is not None:
            say("recovery: " + _recovery_counts(since=scenario_started))
        return summary
