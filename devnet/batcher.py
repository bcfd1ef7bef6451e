"""The devnet's batcher: builds a batch every few seconds, serves it over HTTP, creates its task on chain."""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import Web3Exception

from controlplane.loops import Loop, loop_run, stop_on_signals
from devnet import contracts
from devnet.batches import Batch, make_batch
from devnet.http import JsonHandler, serve

logger = logging.getLogger("devnet.batcher")

_BATCH_NAME = re.compile(r"^/batches/(0x[0-9a-f]{64})\.json$")


class BatchStore:
    """Batch documents on disk, named by their Merkle root."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def path_for(self, root_hex: str) -> Path:
        return self.directory / f"{root_hex}.json"

    def put(self, batch: Batch) -> str:
        root_hex = "0x" + batch.merkle_root.hex()
        target = self.path_for(root_hex)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(batch.to_json())
        tmp.replace(target)
        return root_hex

    def get(self, root_hex: str) -> bytes | None:
        try:
            return self.path_for(root_hex).read_bytes()
        except FileNotFoundError:
            return None


def make_handler(store: BatchStore) -> type[JsonHandler]:
    class Handler(JsonHandler):
        logger = logging.getLogger("devnet.batcher")
        log_prefix = "data server"

        def do_GET(self) -> None:
            match = _BATCH_NAME.match(self.route())
            body = store.get(match.group(1)) if match else None
            if body is None:
                self.send_json(404, {"error": "no such batch"})
            else:
                self.send_body(200, body, "application/json")

    return Handler


def serve_batches(*, store: BatchStore, port: int) -> ThreadingHTTPServer:
    server, _ = serve(make_handler(store), host="127.0.0.1", port=port, name="batch-data")
    return server


# Aligned-like headroom: the aggregator bumps its fees on retries, and the limit caps what it may charge.
FEE_LIMIT_WEI = 10**16
# The balance is topped up when it could pay for fewer than 100 more responses.
LOW_BALANCE_WEI = 100 * FEE_LIMIT_WEI
TOP_UP_WEI = 10 * 10**18


class Batcher:
    def __init__(
        self,
        *,
        w3: Web3,
        service_manager: str,
        account: LocalAccount,
        store: BatchStore,
        data_url: str,
        proofs_per_batch: int,
        invalid_rate: float,
        rng: random.Random,
    ) -> None:
        self.w3 = w3
        self.service_manager = service_manager
        self.account = account
        self.store = store
        self.data_url = data_url.rstrip("/")
        self.proofs_per_batch = proofs_per_batch
        self.invalid_rate = invalid_rate
        self.rng = rng

    def fund(self) -> None:
        """Top the batcher's balance in the service manager up to TOP_UP_WEI when it fell below LOW_BALANCE_WEI,
        so responses to its tasks can be paid for."""
        balance = contracts.batcher_balance(
            self.w3, service_manager=self.service_manager, batcher=self.account.address
        )
        if balance >= LOW_BALANCE_WEI:
            return
        contracts.deposit_to_batcher(
            self.w3, service_manager=self.service_manager, account=self.account, amount=TOP_UP_WEI - balance
        )
        logger.info("batcher balance was %.4f ETH: topped up to %.4f ETH", balance / 1e18, TOP_UP_WEI / 1e18)

    def create_one(self) -> tuple[str, int]:
        """Build, store and announce one batch; returns (merkle root, block number)."""
        invalid = self.rng.random() < self.invalid_rate
        batch = make_batch(rng=self.rng, proofs=self.proofs_per_batch, invalid=invalid)
        root_hex = self.store.put(batch)
        receipt = contracts.create_task(
            self.w3,
            service_manager=self.service_manager,
            batcher=self.account,
            batch_merkle_root=batch.merkle_root,
            data_pointer=f"{self.data_url}/batches/{root_hex}.json",
            fee_limit=FEE_LIMIT_WEI,
        )
        block = int(receipt["blockNumber"])
        logger.info(
            "batch %s created in block %d (%d proofs, %s)",
            root_hex,
            block,
            self.proofs_per_batch,
            "with an invalid proof" if invalid else "all valid",
        )
        return root_hex, block


# While this file exists in the batch directory, the batcher creates no batch (it still serves their data).
PAUSE_FILE = "PAUSE"


def run_batcher(*, state: dict[str, Any], batches_dir: Path) -> None:
    """Run until SIGTERM/SIGINT: one batch per interval; a chain outage is logged and retried."""
    stopping = threading.Event()
    stop_on_signals(stopping)

    config = state["batcher"]
    store = BatchStore(batches_dir)
    server = serve_batches(store=store, port=int(config["port"]))
    w3 = Web3(Web3.HTTPProvider(state["rpc_url"], request_kwargs={"timeout": 10}))
    # Seeded by the devnet seed and the start time, so a restarted batcher never repeats a root.
    rng = random.Random(f"{state['seed']}/{time.time_ns()}")
    batcher = Batcher(
        w3=w3,
        service_manager=state["contracts"]["service_manager"],
        account=Account.from_key(state["accounts"]["batcher"]["private_key"]),
        store=store,
        data_url=config["data_url"],
        proofs_per_batch=int(config["proofs_per_batch"]),
        invalid_rate=float(config["invalid_rate"]),
        rng=rng,
    )
    logger.info(
        "batcher serving batch data on %s, one batch every %ss", config["data_url"], config["interval"]
    )
    paused = batches_dir / PAUSE_FILE

    def step() -> None:
        if not paused.exists():  # the chaos suite lets the network settle: data still served, no new batch
            batcher.fund()
            batcher.create_one()

    # The chain may be down: the runner says so once per outage and tries again after a (capped) backoff.
    loop = Loop(
        name="batcher",
        step=step,
        interval=float(config["interval"]),
        outages={"chain": (OSError, requests.RequestException, Web3Exception)},
        infra=False,
    )
    try:
        loop_run(loop, stopping=stopping)
    finally:
        server.shutdown()
        logger.info("batcher stopped")
