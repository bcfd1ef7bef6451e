"""Bring the reference network up and down: anvil, contracts, registered operators, the batcher.

Every process the devnet starts runs in its own session and is recorded by PID in the devnet file;
``devnet_down`` stops exactly those PIDs, never anything found by name.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3

from bls import KeyPair, keypair_from_seed
from devnet import contracts
from devnet.anvil import free_port, start_anvil
from devnet.components import (
    component_names,
    component_running,
    component_spawn,
    components_stop_all,
    logs_dir,
    manage_py_args,
)
from devnet.state import STATE_VERSION, DevnetStateError, load_state, save_state, state_path

logger = logging.getLogger(__name__)

ETH = 10**18
# Unequal stakes: operator i holds (i + 1) units, so no two operators of five reach 67% together.
STAKE_UNIT_WEI = 10 * ETH
FUNDING_WEI = 1_000 * ETH
#: What the batcher deposits to pay for responses (the batcher tops it up when it runs low).
BATCHER_DEPOSIT_WEI = 10 * ETH


@dataclass(frozen=True)
class DevnetConfig:
    operators: int = 5
    seed: str = "devnet"
    port: int | None = None
    block_time: float = 1.0
    batch_interval: float = 5.0
    invalid_rate: float = 0.0
    proofs_per_batch: int = 4
    # Operators send straight to the aggregator with upstream's give-up policy (reproduces the losses).
    direct: bool = False
    control_plane_url: str = "http://127.0.0.1:8000"
    # How operators send: "gob" (Go net/rpc, as Aligned's operators: to the control plane's aggregator_rpc at
    # control_plane_rpc, or with direct to the aggregator's net/rpc server) or "http" (JSON, for comparison).
    wire: str = "gob"
    control_plane_rpc: str = "127.0.0.1:8090"
    task_window: float = 100.0
    # Over gob, how long the aggregator holds a signature for a task it does not know before it drops it
    # (Aligned's waits about 200 s; the devnet's windows are shorter).
    unknown_task_wait: float = 5.0
    direct_retry_interval: float = 10.0
    direct_tries: int = 10
    # Start the operator and aggregator processes (tests of the chain alone switch them off).
    actors: bool = True

    def validate(self) -> None:
        if not 1 <= self.operators <= 64:
            raise DevnetStateError("--operators must be between 1 and 64")
        if not 0.0 <= self.invalid_rate <= 1.0:
            raise DevnetStateError("--invalid-rate must be between 0 and 1")
        if self.batch_interval <= 0:
            raise DevnetStateError("--batch-interval must be positive")
        if self.block_time < 0:
            raise DevnetStateError("--block-time must be >= 0 (0 mines a block per transaction)")
        if not 1 <= self.proofs_per_batch <= 1024:
            raise DevnetStateError("--proofs-per-batch must be between 1 and 1024")
        if self.wire not in ("gob", "http"):
            raise DevnetStateError("--wire must be gob or http")


def ecdsa_account(seed: str, role: str) -> LocalAccount:
    """A deterministic account per role, so a devnet with the same seed has the same addresses."""
    key = keccak(f"avs-controlplane/ecdsa/{seed}/{role}".encode())
    account: LocalAccount = Account.from_key(key)
    return account


def operator_keypair(seed: str, index: int) -> KeyPair:
    return keypair_from_seed(seed, index)


def _account_json(account: LocalAccount) -> dict[str, str]:
    return {"address": account.address.lower(), "private_key": "0x" + bytes(account.key).hex()}


def devnet_logs_dir(path: Path) -> Path:
    return logs_dir(path)


def devnet_up(*, config: DevnetConfig, path: Path | str | None = None) -> dict[str, Any]:
    """Start the chain, deploy and register, then the aggregator, operators and batcher; write the devnet file."""
    config.validate()
    target = state_path(path)
    if target.exists():
        try:
            previous = load_state(target)
        except DevnetStateError:
            previous = {}
        if component_running(previous, "chain"):
            raise DevnetStateError(
                f"a devnet is already running (chain pid {previous['components']['chain']['pid']}); "
                "run `python manage.py devnet down` first"
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    logs = logs_dir(target)
    chain_state = target.parent / "chain-state.json"
    chain_state.unlink(missing_ok=True)

    # Mixed mining: transactions are mined at once (fast set-up, fast tasks) and blocks also keep coming.
    # --state/--state-interval let `devnet stop chain` + `devnet start chain` resume the same chain.
    node = start_anvil(
        port=config.port,
        block_time=config.block_time or None,
        extra_args=[
            *(["--mixed-mining"] if config.block_time else []),
            "--state",
            str(chain_state),
            "--state-interval",
            "1",
        ],
        log_path=logs / "chain.log",
        detach=True,
    )
    state: dict[str, Any] = {"version": STATE_VERSION, "components": {}}
    state["components"]["chain"] = {
        "pid": node.pid,
        "args": node.args,
        "log": str(logs / "chain.log"),
        "started_at": time.time(),
        "starts": 1,
    }
    try:
        network_deploy(state=state, config=config, rpc_url=node.url, ws_url=node.ws_url)
        save_state(state, target)
        if config.actors:
            component_spawn(
                state=state,
                state_file=target,
                name="aggregator",
                args=manage_py_args("devnet", "run-aggregator", "--state", str(target)),
            )
            for operator in state["operators"]:
                component_spawn(
                    state=state,
                    state_file=target,
                    name=operator["name"],
                    args=manage_py_args(
                        "devnet", "run-operator", "--state", str(target), "--index", str(operator["index"])
                    ),
                )
        component_spawn(
            state=state,
            state_file=target,
            name="batcher",
            args=manage_py_args("devnet", "run-batcher", "--state", str(target)),
        )
        save_state(state, target)
    except BaseException:
        components_stop_all(state)
        raise
    return state


def network_deploy(*, state: dict[str, Any], config: DevnetConfig, rpc_url: str, ws_url: str) -> None:
    w3 = Web3(Web3.HTTPProvider(rpc_url))
    deployer = ecdsa_account(config.seed, "deployer")
    aggregator = ecdsa_account(config.seed, "aggregator")
    batcher = ecdsa_account(config.seed, "batcher")
    operator_accounts = [ecdsa_account(config.seed, f"operator-{i}") for i in range(config.operators)]
    aggregator_port = free_port()
    for account in [deployer, aggregator, batcher, *operator_accounts]:
        w3.provider.make_request("anvil_setBalance", [account.address, hex(FUNDING_WEI)])  # type: ignore[arg-type]

    deployment = contracts.deploy_contracts(w3, deployer=deployer, aggregator=aggregator.address)
    operators: list[dict[str, Any]] = []
    for index, account in enumerate(operator_accounts):
        keypair = operator_keypair(config.seed, index)
        port = free_port()
        socket = f"http://127.0.0.1:{port}"
        stake = STAKE_UNIT_WEI * (index + 1)
        contracts.register_operator(
            w3, registry=deployment.registry, account=account, keypair=keypair, socket=socket
        )
        contracts.set_operator_stake(
            w3, registry=deployment.registry, owner=deployer, operator_id=keypair.operator_id, stake=stake
        )
        operators.append(
            {
                "index": index,
                "name": f"operator-{index + 1}",
                # Authenticates the control plane's catch-up requests to this operator's control endpoint.
                "control_token": secrets.token_hex(16),
                **_account_json(account),
                "bls_secret": hex(keypair.secret),
                "operator_id": "0x" + keypair.operator_id.hex(),
                "public_key_g1": keypair.public_key_g1.to_hex(),
                "public_key_g2": keypair.public_key_g2.to_hex(),
                "stake": str(stake),
                "port": port,
                "socket": socket,
            }
        )
    # The batcher pays for every response to its tasks from its balance in the service manager.
    contracts.deposit_to_batcher(
        w3, service_manager=deployment.service_manager, account=batcher, amount=BATCHER_DEPOSIT_WEI
    )
    batcher_port = free_port()
    aggregator_rpc_port = free_port()
    state.update(
        {
            "seed": config.seed,
            "chain_id": deployment.chain_id,
            "rpc_url": rpc_url,
            "ws_url": ws_url,
            "start_block": deployment.block_number,
            "contracts": {
                "service_manager": deployment.service_manager,
                "registry": deployment.registry,
                "registry_addresses": [deployment.registry],
                "operator_state_retriever": deployment.operator_state_retriever,
            },
            "accounts": {
                "deployer": _account_json(deployer),
                "aggregator": _account_json(aggregator),
                "batcher": _account_json(batcher),
            },
            "batcher": {
                "data_url": f"http://127.0.0.1:{batcher_port}",
                "port": batcher_port,
                "interval": config.batch_interval,
                "invalid_rate": config.invalid_rate,
                "proofs_per_batch": config.proofs_per_batch,
            },
            "block_time": config.block_time,
            "operators": operators,
            "aggregator": {
                "port": aggregator_port,
                "url": f"http://127.0.0.1:{aggregator_port}",
                "rpc_port": aggregator_rpc_port,
                "rpc_address": f"127.0.0.1:{aggregator_rpc_port}",
                "address": aggregator.address.lower(),
                # The control plane forwards over HTTP to this aggregator (it can be told of a task there).
                "protocol": "http",
            },
            "direct": config.direct,
            "operator_wire": config.wire,
            "control_plane_url": config.control_plane_url,
            "control_plane_rpc": config.control_plane_rpc,
            "aggregator_unknown_task_wait": config.unknown_task_wait,
            "aggregator_task_window": config.task_window,
            "direct_retry_interval": config.direct_retry_interval,
            "direct_tries": config.direct_tries,
            "operator_poll_interval": 0.5,
            "aggregator_poll_interval": 0.5,
        }
    )


def devnet_down(*, path: Path | str | None = None) -> list[str]:
    """Stop every process the devnet started (by PID) and remove its file. Returns what was stopped."""
    target = state_path(path)
    if not target.exists():
        return []
    state = load_state(target)
    stopped = components_stop_all(state)
    target.unlink(missing_ok=True)
    (target.parent / "chain-state.json").unlink(missing_ok=True)
    return stopped


def devnet_status(*, path: Path | str | None = None) -> dict[str, Any]:
    state = load_state(path)
    return {
        "rpc_url": state.get("rpc_url"),
        "service_manager": state.get("contracts", {}).get("service_manager"),
        "components": {
            name: {
                "pid": state["components"][name].get("pid"),
                "running": component_running(state, name),
                "starts": state["components"][name].get("starts", 1),
                "log": state["components"][name].get("log"),
            }
            for name in reversed(component_names(state))
        },
    }
