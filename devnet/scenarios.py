"""``devnet scenario``: a named fault scenario over a fixed number of batches, counting what is lost.

Run on a fresh devnet of 5 operators (stakes 10..50: any two of the largest three hold > 1/3). Timings are
scaled down from upstream's (operators retry 10 times 1 s apart instead of 10 s; the aggregator drops a task
after 15 s instead of 100 s) so a scenario takes about a minute; the failure modes are the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from devnet.components import aggregator_replace, component_start, component_stop
from devnet.network import DevnetConfig, devnet_down, devnet_up
from monitoring.chain import ChainClient
from monitoring.ingest.abi import TOPICS, batch_identifier, decode_log

BATCH_INTERVAL = 3.0
TASK_WINDOW = 15.0
DIRECT_RETRY_INTERVAL = 1.0


@dataclass
class BatchOutcome:
    identifier: str
    created_block: int
    verified_block: int | None = None

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


class _Chain:
    def __init__(self, state: dict[str, Any]) -> None:
        self.client = ChainClient(state["rpc_url"], max_attempts=3, backoff_base=0.1)
        self.service_manager = state["contracts"]["service_manager"]

    def head(self) -> int:
        return self.client.block_number()

    def outcomes(self, *, after: int = -1) -> list[BatchOutcome]:
        logs = self.client.get_logs(
            addresses=[self.service_manager],
            topics=[[TOPICS["NewBatchV3"], TOPICS["BatchVerified"]]],
            from_block=0,
            to_block=self.client.block_number(),
        )
        batches: dict[str, BatchOutcome] = {}
        for log in logs:
            event = decode_log(log.topics, log.data)
            if event is None:
                continue
            identifier = batch_identifier(event.args["batchMerkleRoot"], event.args["senderAddress"])
            if event.name == "NewBatchV3":
                batches[identifier] = BatchOutcome(identifier=identifier, created_block=log.block_number)
            elif identifier in batches:
                batches[identifier].verified_block = log.block_number
        return sorted((b for b in batches.values() if b.created_block > after), key=lambda b: b.created_block)


def _wait_for_batches(chain: _Chain, count: int, *, after: int, timeout: float = 120.0) -> list[BatchOutcome]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batches = chain.outcomes(after=after)
        if len(batches) >= count:
            return batches
        time.sleep(0.2)
    raise TimeoutError(f"fewer than {count} batches were created within {timeout:g} s")


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _wait_ready(state: dict[str, Any], timeout: float = 60.0) -> None:
    """Until the aggregator and every operator answer healthy: batches before that prove nothing."""
    urls = [state["aggregator"]["url"] + "/health"] + [
        op["socket"] + "/eigen/node/health" for op in state["operators"]
    ]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(_answers(url) for url in urls):
            return
        time.sleep(0.2)
    raise TimeoutError("the devnet's operators and aggregator did not all become healthy")


def _aggregator_holds_partial(state: dict[str, Any]) -> bool:
    """The aggregator holds a task with some signatures but no response yet: mid-quorum."""
    try:
        health = requests.get(state["aggregator"]["url"] + "/health", timeout=1).json()
    except (requests.RequestException, ValueError):
        return False
    return any(task["signers"] and not task["responded"] for task in health.get("tasks", []))


def _wait_mid_quorum(state: dict[str, Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _aggregator_holds_partial(state):
            return
        time.sleep(0.02)
    raise TimeoutError("the aggregator never held a partial aggregate")


def scenario_run(
    *, name: str, direct: bool, batches: int, control_plane_url: str, say: Callable[[str], object]
) -> ScenarioSummary:
    config = DevnetConfig(
        operators=5,
        seed=f"scenario-{name}",
        block_time=1.0,
        batch_interval=BATCH_INTERVAL,
        direct=direct,
        control_plane_url=control_plane_url,
        task_window=TASK_WINDOW,
        direct_retry_interval=DIRECT_RETRY_INTERVAL,
    )
    say(
        f"scenario {name}: {batches} batches, operators send to {'the aggregator' if direct else control_plane_url}"
    )
    state = devnet_up(config=config)
    try:
        chain = _Chain(state)
        _wait_ready(state)
        ready = chain.head()
        _wait_for_batches(chain, 1, after=ready)
        if name == "operators-down":
            # 40 + 50 of 150 stake: more than a third is down for the next batches.
            for operator in ("operator-4", "operator-5"):
                component_stop(name=operator)
            say("fault: operator-4 and operator-5 (60% of stake) down")
            _wait_for_batches(chain, min(4, batches), after=ready)
            for operator in ("operator-4", "operator-5"):
                component_start(name=operator)
            say("fault healed: operator-4 and operator-5 back up")
        elif name in ("aggregator-crash", "aggregator-replace"):
            _wait_for_batches(chain, 2, after=ready)
            _wait_mid_quorum(state)
            if name == "aggregator-crash":
                component_stop(name="aggregator", kill=True)
                say("fault: aggregator killed (SIGKILL) mid-quorum")
                time.sleep(2.0)
                component_start(name="aggregator")
                say("fault healed: aggregator restarted (new boot id)")
            else:
                aggregator_replace()
                say("fault: aggregator replaced mid-quorum (new boot id, same key)")
        # The batcher keeps running (it serves the batches' data); only the first ``batches`` count.
        created = _wait_for_batches(chain, batches, after=ready, timeout=batches * BATCH_INTERVAL * 4 + 60)
        wanted = {b.identifier for b in created[:batches]}
        # Long enough for every retry and the aggregator's window to run out: what is not verified now is lost.
        grace = TASK_WINDOW + 10 * DIRECT_RETRY_INTERVAL + 5.0
        say(f"all {batches} batches created; waiting {grace:g} s for verifications")
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            outcomes = [b for b in chain.outcomes() if b.identifier in wanted]
            if all(not b.lost for b in outcomes):
                break
            time.sleep(0.5)
        summary = ScenarioSummary(batches=[b for b in chain.outcomes() if b.identifier in wanted])
        for b in summary.batches:
            verdict = f"verified in block {b.verified_block}" if not b.lost else "lost"
            say(f"batch {b.identifier[:18]}… created in block {b.created_block}: {verdict}")
        return summary
    finally:
        devnet_down()
