"""The devnet's batcher: builds a batch every few seconds, serves it over HTTP, creates its task on chain."""

from __future__ import annotations

import logging
import random
import re
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from devnet import contracts
from devnet.batches import Batch, make_batch

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


def make_handler(store: BatchStore) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            match = _BATCH_NAME.match(self.path)
            body = store.get(match.group(1)) if match else None
            if body is None:
                self.send_response(404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"error": "no such batch"}')
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("data server: " + format, *args)

    return Handler


def serve_batches(*, store: BatchStore, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(store))
    threading.Thread(target=server.serve_forever, name="batch-data", daemon=True).start()
    return server


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
            fee_limit=10**15,
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

    def _stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)

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
    try:
        while not stopping.is_set():
            if paused.exists():  # the chaos suite lets the network settle: data still served, no new batch
                stopping.wait(float(config["interval"]))
                continue
            try:
                batcher.create_one()
            except Exception as exc:  # the chain may be down; keep going, say so
                logger.warning(
                    "could not create a batch (%s: %s); retrying next interval", type(exc).__name__, exc
                )
            stopping.wait(float(config["interval"]))
    finally:
        server.shutdown()
        logger.info("batcher stopped")
