"""``devnet chaos --seeds 1-50``: the promise under random faults of every component, checked from the chain.

Each seed gets a fresh devnet (5 operators with unequal stakes, a tenth of the batches invalid) and the whole
control plane, on a Postgres cluster and a Redis server the suite started itself (so they can be restarted and
crashed), with a fault proxy between the control plane and the chain. A schedule that is a pure function of the
seed then mixes every fault this module knows (``FAULT_KINDS``). After the faults stop, everything is healed,
the batcher pauses, and the suite waits for the network to settle. Then it checks, Jepsen-style, from sources
the control plane does not write:

- every valid batch created during the run has exactly one ``BatchVerified`` on chain (else it is lost);
- no batch the batcher made invalid (its stored data fails the operators' check) is verified;
- every signature the intake acknowledged (the operators' own log of 202 answers) is in Postgres, verified
  or invalid;
- how long after the last fault healed the last batch was verified.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from controlplane.processes import pids_with_env, stop_pid
from devnet.anvil import free_port, rpc
from devnet.batcher import PAUSE_FILE
from devnet.batches import BatchFormatError, check_batch, parse_batch
from devnet.chaos import (
    BATCH_INTERVAL,
    CONFIRMATIONS,
    OPERATORS,
    RETRY_WINDOW,
    TASK_WINDOW,
    Fault,
    fault_kinds,
    suite_schedule,
)
from devnet.components import aggregator_replace, component_running, component_start, component_stop
from devnet.faultproxy import FaultProxy
from devnet.infra import PostgresServer, RedisServer
from devnet.network import DevnetConfig, devnet_down, devnet_up
from devnet.scenarios import ChainWatch, wait_ready
from devnet.stack import CONTROL_PLANE_ENV, ControlPlane, answers, standby_env
from devnet.state import load_state

# The loops this project runs: they must never exit by themselves (the RQ worker and the web server may; they are
# restarted).
OWN_LOOPS = ("cp-ingest", "cp-verifier", "cp-prober", "cp-recovery", "cp-alerts")
SETTLE_TIMEOUT = 300.0
_NETWORK_SETTINGS = (
    "SERVICE_MANAGER_ADDRESS",
    "REGISTRY_ADDRESSES",
    "START_BLOCK",
    "AGGREGATOR_URL",
    "OPERATOR_CONTROL_TOKENS",
)


def chain_reorg(url: str, *, depth: int) -> None:
    """Replace the newest ``depth`` blocks with new ones holding the same transactions (a real reorg: new
    hashes, nothing lost), with mining paused meanwhile so no block slips in between reading and replacing."""
    rpc(url, "evm_setIntervalMining", [0])
    try:
        head = int(str(rpc(url, "eth_blockNumber")), 16)
        replay: list[list[object]] = []
        for offset, number in enumerate(range(head - depth + 1, head + 1)):
            block = rpc(url, "eth_getBlockByNumber", [hex(number), False])
            assert isinstance(block, dict)
            for tx_hash in block.get("transactions") or []:
                replay.append([rpc(url, "eth_getRawTransactionByHash", [tx_hash]), offset])
        rpc(url, "anvil_reorg", [depth, replay])
    finally:
        rpc(url, "evm_setIntervalMining", [1])


@dataclass
class SeedResult:
    seed: int
    schedule: list[Fault]
    logs: Path
    created: int = 0  # valid batches
    invalid: int = 0
    verified: int = 0
    lost: list[str] = field(default_factory=list)
    verified_twice: list[str] = field(default_factory=list)
    invalid_verified: list[str] = field(default_factory=list)
    acknowledged: int = 0
    acks_lost: list[str] = field(default_factory=list)
    settle: float | None = None
    exits: dict[str, int] = field(default_factory=dict)
    error: str = ""

    @property
    def loops_exited(self) -> dict[str, int]:
        return {name: n for name, n in self.exits.items() if name in OWN_LOOPS}

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.verified_twice
            or self.invalid_verified
            or self.acks_lost
            or self.error
            or self.settle is None
            or self.loops_exited
        )

    def line(self) -> str:
        settle = (
            f"settled {self.settle:.1f} s after the last fault"
            if self.settle is not None
            else "never settled"
        )
        text = (
            f"seed {self.seed}: {'ok' if self.ok else 'FAILED'}: {self.created} batches created "
            f"(+{self.invalid} invalid), {self.verified} verified, {len(self.lost)} lost, "
            f"{len(self.verified_twice)} verified twice, {len(self.invalid_verified)} invalid verified, "
            f"{self.acknowledged} acknowledged signatures ({len(self.acks_lost)} lost), {settle}, "
            f"{len(self.schedule)} faults"
        )
        if self.exits:
            text += "; exited by themselves: " + ", ".join(f"{n} x{c}" for n, c in sorted(self.exits.items()))
        if self.error:
            text += f"; error: {self.error}"
        return text


class _Seed:
    """One seed's network, control plane and faults."""

    def __init__(
        self, *, seed: int, root: Path, pg: PostgresServer, redis: RedisServer, say: Callable[[str], object]
    ):
        self.seed = seed
        self.dir = root / f"seed-{seed}"
        self.state_file = self.dir / "devnet.json"
        self.pg = pg
        self.redis = redis
        self.say = say
        self.proxy: FaultProxy | None = None
        self.control_plane: ControlPlane | None = None
        self.rpc_url = ""
        self.database = ""
        self.aggregator_gone = False

    # -- set-up and tear-down ---------------------------------------------------------------------------

    def up(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.database = self.pg.create_database(f"chaos_{self.seed}")
        self.redis.flush()
        url = f"http://127.0.0.1:{free_port()}"
        rpc_address = (
            f"127.0.0.1:{free_port()}"  # the operators send over gob to the control plane's aggregator_rpc
        )
        state = devnet_up(
            config=DevnetConfig(
                operators=OPERATORS,
                seed=f"chaos-{self.seed}",
                block_time=1.0,
                batch_interval=BATCH_INTERVAL,
                invalid_rate=0.1,
                control_plane_url=url,
                control_plane_rpc=rpc_address,
                task_window=TASK_WINDOW,
                direct_retry_interval=RETRY_WINDOW / 10,
            ),
            path=self.state_file,
        )
        self.rpc_url = str(state["rpc_url"])
        # One block a second from now on, transactions included at the next one: the mode a reorg can pause
        # and resume exactly (the set-up used mixed mining, to be quick).
        rpc(self.rpc_url, "evm_setIntervalMining", [1])
        self.proxy = FaultProxy(self.rpc_url).start()
        env = {key: value for key, value in os.environ.items() if key not in _NETWORK_SETTINGS}
        env.update(
            {
                **CONTROL_PLANE_ENV,
                "INGEST_CONFIRMATIONS": str(CONFIRMATIONS),
                "DATABASE_URL": self.database,
                "REDIS_URL": self.redis.url,
                "CHAIN_RPC_URL": self.proxy.url,
                "DEVNET_FILE": str(self.state_file),
                "DEVNET_DIR": str(self.dir),
                "SECRET_KEY": "chaos-only",
                "DEBUG": "0",
                # The aggregator may be gone for good (a fault kind): the standby answers then.
                **standby_env(state, self.dir / "secrets"),
            }
        )
        self.control_plane = ControlPlane(url=url, logs=self.dir / "logs", env=env, rpc_address=rpc_address)
        self.control_plane.start(reset_ledger=False)
        wait_ready(state, timeout=120)
        deadline = time.monotonic() + 60
        while not answers(url + "/healthz"):
            if time.monotonic() > deadline:
                raise TimeoutError("the control plane's web server never answered")
            time.sleep(0.2)

    def down(self, *, keep: bool) -> None:
        if self.control_plane is not None:
            self.control_plane.stop()
        if self.proxy is not None:
            self.proxy.stop()
        try:
            devnet_down(path=self.state_file)
        except Exception as exc:
            self.say(f"seed {self.seed}: stopping the devnet: {exc}")
        # A signal that cut in between a fork and the recording of its PID leaves a process nobody tracks; every
        # process of this seed carries its directory in DEVNET_DIR, so none is left behind.
        for pid, command in pids_with_env("DEVNET_DIR", str(self.dir)).items():
            stop_pid(pid)
            self.say(f"seed {self.seed}: stopped pid {pid} that was not tracked ({command[:80]})")
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- faults --------------------------------------------------------------------------------------------

    def apply(self, schedule: list[Fault]) -> None:
        """Run the schedule in real time: each fault at its time, its healing ``lasts`` seconds later."""
        actions: list[tuple[float, int, Callable[[], None], str]] = []
        for i, fault in enumerate(schedule):
            start, heal = self._fault(fault)
            actions.append((fault.at, i, start, fault.describe()))
            if heal is not None:
                actions.append((fault.at + fault.lasts, i, heal, f"heal {fault.kind} {fault.target}".strip()))
        actions.sort(key=lambda a: (a[0], a[1]))
        with open(self.dir / "logs" / "chaos.log", "a") as log:
            began = time.monotonic()
            for at, _, action, text in actions:
                delay = at - (time.monotonic() - began)
                if delay > 0:
                    time.sleep(delay)
                try:
                    action()
                    log.write(f"t+{time.monotonic() - began:6.1f}s {text}\n")
                except Exception as exc:
                    log.write(
                        f"t+{time.monotonic() - began:6.1f}s {text}: FAILED {type(exc).__name__}: {exc}\n"
                    )
                log.flush()

    def _fault(self, fault: Fault) -> tuple[Callable[[], None], Callable[[], None] | None]:
        assert self.proxy is not None
        assert self.control_plane is not None
        path, proxy, control_plane = self.state_file, self.proxy, self.control_plane
        kind = fault.kind
        if kind in ("operator", "stake-down", "aggregator-crash", "aggregator-outage"):
            names = fault.target.split("+")
            kill = kind.startswith("aggregator") or fault.mode == "kill"

            def stop() -> None:
                for name in names:
                    component_stop(name=name, kill=kill, path=path)

            def start() -> None:
                state = load_state(path)
                for name in names:
                    if not component_running(state, name):
                        component_start(name=name, path=path)

            return stop, start
        if kind == "aggregator-gone":

            def gone() -> None:
                self.aggregator_gone = True
                component_stop(name="aggregator", kill=True, path=path)

            return gone, None
        if kind == "aggregator-replace":

            def replace() -> None:
                aggregator_replace(path=path, kill_old=True)

            return replace, None
        if kind == "cp-kill":
            return lambda: control_plane.crash(fault.target), None
        if kind == "redis-flush":
            return self.redis.flush, None
        if kind == "redis-restart":
            return self.redis.restart, None
        if kind == "postgres-restart":
            return lambda: self.pg.restart(mode="fast"), None
        if kind == "postgres-crash":
            return lambda: self.pg.restart(mode="immediate"), None
        if kind in ("rpc-refuse", "rpc-error"):
            return lambda: proxy.outage(kind.split("-")[1], fault.lasts), proxy.heal
        if kind == "reorg":
            return lambda: chain_reorg(self.rpc_url, depth=int(fault.mode.split()[-1])), None
        raise ValueError(f"unknown fault {kind!r}")

    def heal_all(self) -> None:
        """Whatever a fault left down is brought back (the run ends healed)."""
        assert self.proxy is not None
        assert self.control_plane is not None
        self.proxy.heal()
        if not self.pg.running():
            self.pg.start()
        if not self.redis.running():
            self.redis.start()
        state = load_state(self.state_file)
        for name in state.get("components", {}):
            if name == "aggregator" and self.aggregator_gone:
                continue  # gone for good: it stays gone
            if name != "chain" and not component_running(state, name):
                component_start(name=name, path=self.state_file)
        for name in self.control_plane.commands:
            self.control_plane.start_one(name)

    # -- what happened ---------------------------------------------------------------------------------

    def validity(self, outcomes: Iterable[Any]) -> dict[str, bool]:
        """Per batch, whether its data passes the operators' check (read from the batcher's own files)."""
        valid = {}
        for outcome in outcomes:
            try:
                raw = (self.dir / "batches" / f"{outcome.merkle_root}.json").read_bytes()
                check = check_batch(
                    batch=parse_batch(raw), expected_root=bytes.fromhex(outcome.merkle_root[2:])
                )
                valid[outcome.identifier] = check.ok
            except (OSError, BatchFormatError):
                valid[outcome.identifier] = False
        return valid

    def acknowledged(self) -> list[dict[str, Any]]:
        acks = []
        for path in sorted((self.dir / "acks").glob("*.jsonl")):
            for line in path.read_text().splitlines():
                if line.strip():
                    acks.append(json.loads(line))
        return acks

    def acks_unsettled(self, acks: list[dict[str, Any]]) -> list[str]:
        """Acknowledged signatures that are not in Postgres, verified or invalid (yet, or at all)."""
        if not acks:
            return []
        with psycopg.connect(self.database, connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT batch_identifier, operator_id, signature_x, signature_y FROM monitoring_signature "
                "WHERE status IN ('verified', 'invalid')"
            ).fetchall()
        final = {tuple(str(v).lower() for v in row) for row in rows}
        missing = []
        for ack in acks:
            key = (
                ack["batchIdentifierHash"].lower(),
                ack["operatorId"].lower(),
                ack["blsSignature"]["X"].lower(),
                ack["blsSignature"]["Y"].lower(),
            )
            if key not in final:
                missing.append(f"{key[1][:10]} on {key[0][:10]}")
        return missing


def chaos_seed(
    *,
    seed: int,
    duration: float,
    faults: str,
    root: Path,
    pg: PostgresServer,
    redis: RedisServer,
    say: Callable[[str], object],
    keep: bool = False,
) -> SeedResult:
    run = _Seed(seed=seed, root=root, pg=pg, redis=redis, say=say)
    result = SeedResult(
        seed=seed, schedule=suite_schedule(seed=seed, duration=duration, faults=faults), logs=run.dir
    )
    try:
        run.up()
        state = load_state(run.state_file)
        chain = ChainWatch(state)
        start_block = chain.head()
        run.apply(result.schedule)
        run.heal_all()
        (run.dir / "batches" / PAUSE_FILE).touch()  # no new batch: the run's batches settle
        healed = time.monotonic()
        deadline = healed + SETTLE_TIMEOUT
        settled_at: float | None = None
        while time.monotonic() < deadline:
            outcomes = chain.outcomes(after=start_block)
            valid = run.validity(outcomes)
            pending = [o for o in outcomes if valid[o.identifier] and o.verifications == 0]
            if not pending and not run.acks_unsettled(run.acknowledged()):
                settled_at = time.monotonic()
                break
            time.sleep(1.0)
        outcomes = chain.outcomes(after=start_block)
        valid = run.validity(outcomes)
        good = [o for o in outcomes if valid[o.identifier]]
        bad = [o for o in outcomes if not valid[o.identifier]]
        last_verified = max((o.verified_block or 0 for o in good), default=0)
        result.created, result.invalid = len(good), len(bad)
        result.verified = sum(1 for o in good if o.verifications)
        result.lost = [o.identifier for o in good if not o.verifications]
        result.verified_twice = [o.identifier for o in good if o.verifications > 1]
        result.invalid_verified = [o.identifier for o in bad if o.verifications]
        acks = run.acknowledged()
        result.acknowledged = len(acks)
        result.acks_lost = run.acks_unsettled(acks)
        if settled_at is not None:
            result.settle = max(0.0, settled_at - healed) if last_verified else 0.0
        assert run.control_plane is not None
        result.exits = run.control_plane.unexpected_exits()
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        run.down(keep=keep or not result.ok)
    return result


def summary_line(results: list[SeedResult]) -> str:
    settles = sorted(r.settle for r in results if r.settle is not None)

    def pct(q: float) -> str:
        if not settles:
            return "-"
        return f"{settles[min(len(settles) - 1, round(q * (len(settles) - 1)))]:.1f}"

    p50 = f"{statistics.median(settles):.1f}" if settles else "-"
    return (
        f"chaos: {len(results)} seeds, {sum(r.created for r in results)} batches created, "
        f"{sum(r.verified for r in results)} verified, {sum(len(r.lost) for r in results)} lost, "
        f"{sum(len(r.acks_lost) for r in results)} acknowledged signatures lost, "
        f"settle p50/p95/max {p50}/{pct(0.95)}/{pct(1.0)} s"
    )


def chaos_suite(
    *,
    seeds: list[int],
    duration: float,
    faults: str,
    root: Path,
    say: Callable[[str], object],
    keep: bool = False,
) -> list[SeedResult]:
    fault_kinds(faults)  # refuse an unknown group before starting anything
    root.mkdir(parents=True, exist_ok=True)
    pg = PostgresServer(root / "infra" / "postgres").init()
    redis = RedisServer(root / "infra" / "redis")
    results: list[SeedResult] = []
    interrupted = False
    try:
        pg.start()
        redis.start()
        say(
            f"chaos: {len(seeds)} seeds, {duration:g} s of {faults} faults each; own Postgres on port {pg.port}, "
            f"own Redis on port {redis.port}; logs under {root}"
        )
        for seed in seeds:
            result = chaos_seed(
                seed=seed, duration=duration, faults=faults, root=root, pg=pg, redis=redis, say=say, keep=keep
            )
            results.append(result)
            say(result.line())
            if not result.ok:
                say(f"seed {seed}: schedule (replay it with --seeds {seed}); logs kept in {result.logs}")
                for fault in result.schedule:
                    say(f"    {fault.describe()}")
                for identifier in result.lost:
                    say(f"    lost: batch {identifier}")
                for ack in result.acks_lost:
                    say(f"    acknowledged signature lost: {ack}")
    except KeyboardInterrupt:
        # Ctrl-C or SIGTERM: the seed in progress has stopped what it started (its finally); so does this.
        interrupted = True
    finally:
        redis.stop()
        pg.destroy(say=say)
    if interrupted:
        say(f"chaos: interrupted; stopped everything it started ({len(results)} of {len(seeds)} seeds done)")
        say(summary_line(results))
        raise KeyboardInterrupt
    say(summary_line(results))
    return results
