"""What an aggregator is: its account, its tasks in memory, its chain access, and how it stops."""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from http.server import ThreadingHTTPServer
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import RPCEndpoint

from bls import (
    G1Point,
    G2Point,
    InvalidPoint,
    PairingBackend,
    pairing_backend,
)
from chain import AdaptiveRange, ChainClient
from controlplane.netrpc import RpcServer
from devnet import contracts
from devnet.aggregator.common import (
    SUBMIT_THREADS,
    AggregatorConfig,
    Task,
)

logger = logging.getLogger("devnet.aggregator")


class AggregatorBase:
    """The state every part of the aggregator shares; the parts are the subclasses."""

    def __init__(self, *, state: dict[str, Any], backend: PairingBackend | None = None) -> None:
        self.config = AggregatorConfig.from_state(state)
        self.boot_id = uuid.uuid4().hex
        self.started_at: float | None = None
        self.account: LocalAccount = Account.from_key(self.config.aggregator_key)
        self.backend = backend or pairing_backend()
        self._tasks: dict[str, Task] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._jobs: queue.Queue[str | None] = queue.Queue()
        # Held from a response's first nonce to its receipt: a retry reuses its nonce to replace a stuck transaction,
        # which another response's send in between would take.
        self._send_lock = threading.Lock()
        self._web3: Web3 | None = None
        self._web3_lock = threading.Lock()
        self._keys: dict[str, G2Point] = {}
        self._keys_g1: dict[bytes, G1Point] = {}
        self._stake_cache: dict[tuple[str, int], int] = {}
        self._total_cache: dict[int, int] = {}
        self._server: ThreadingHTTPServer | None = None
        self._rpc_server: RpcServer | None = None
        self._threads: list[threading.Thread] = []
        self.next_block: int | None = None
        # eth_getLogs ranges of the chain stage, up to 2000 blocks a call; smaller when the node refuses.
        self._window = AdaptiveRange(initial=2000, maximum=2000)

    @property
    def port(self) -> int:
        return self.config.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.config.port}"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every thread; all tasks and partial aggregates are dropped (deliberately)."""
        self._stop.set()
        for _ in range(SUBMIT_THREADS):
            self._jobs.put(None)
        for server in (self._server, self._rpc_server):
            if server is not None:
                server.shutdown()
                server.server_close()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        with self._lock:
            held = len(self._tasks)
            self._tasks.clear()
        logger.info("aggregator %s stopped; %d task(s) held in memory are gone", self.boot_id, held)

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _client(self) -> ChainClient:
        return ChainClient(
            self.config.rpc_url, timeout=5.0, max_attempts=2, backoff_base=0.1, backoff_cap=0.5
        )

    def _w3(self) -> Web3:
        """One Web3 for every thread: its HTTP provider keeps a session per thread itself. (A Web3 per thread was
        one per HTTP connection, since the server runs a thread per connection, and so were its contract objects
        and its eth_chainId.)"""
        with self._web3_lock:  # not self._lock: callers may hold it
            if self._web3 is None:
                self._web3 = Web3(
                    Web3.HTTPProvider(
                        self.config.rpc_url,
                        request_kwargs={"timeout": 10},
                        cache_allowed_requests=True,
                        cacheable_requests={RPCEndpoint("eth_chainId")},
                    )
                )
            return self._web3

    def _batch_state(self, identifier: str) -> tuple[int, bool]:
        """(taskCreatedBlock, responded) of a batch on chain; (0, False) when it does not exist."""
        manager = contracts.service_manager_contract(self._w3(), self.config.service_manager)
        created, responded, _fee_limit = manager.functions.batchesState(bytes.fromhex(identifier[2:])).call()
        return int(created), bool(responded)

    def _stake(self, operator_id: str, block: int) -> int:
        key = (operator_id, block)
        if key not in self._stake_cache:
            self._stake_cache[key] = contracts.stake_at_block(
                self._w3(),
                registry=self.config.registry,
                operator_id=bytes.fromhex(operator_id[2:]),
                block_number=block,
            )
        return self._stake_cache[key]

    def _total_stake(self, block: int) -> int:
        if block not in self._total_cache:
            self._total_cache[block] = contracts.total_stake_at_block(
                self._w3(), registry=self.config.registry, block_number=block
            )
        return self._total_cache[block]

    def _public_key(self, operator_id: str) -> G2Point | None:
        if operator_id not in self._keys:
            raw = self.config.operator_keys.get(operator_id)
            if raw is None:
                return None
            try:
                # The backend's subgroup check (pyrevm: ~4 ms, py_ecc ~25 ms): a restarted aggregator parses them all.
                self._keys[operator_id] = G2Point.from_hex(raw, in_subgroup=self.backend.g2_in_subgroup)
            except InvalidPoint:
                logger.error("operator %s has an invalid G2 key in the devnet file", operator_id)
                return None
        return self._keys[operator_id]
