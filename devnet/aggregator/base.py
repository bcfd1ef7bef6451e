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
from chain.contracts import (
    OperatorState,
    batches_state_data,
    batches_state_decode,
    operator_state_data,
    operator_state_decode,
)
from chain.transactions import call_simulate
from controlplane.netrpc import RpcServer
from devnet import contracts
from devnet.aggregator.common import (
    STATE_CACHE_BLOCKS,
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
        self._states: dict[int, list[OperatorState]] = {}
        self._states_lock = threading.Lock()
        self._local = threading.local()
        self._chain_id_value: int | None = None
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

    def _chain(self) -> ChainClient:
        """This thread's client for the hot path: a signature, an announcement, a response. Plain JSON-RPC costs
        a sixth of web3's CPU per call (1.2 ms against 7.7 ms for batchesState), and every replayed batch makes
        about ten calls in this one process."""
        client: ChainClient | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._client()
        return client

    def _eth_call(self, *, to: str, data: str, function: str) -> str:
        """A view call's return data; ContractRevertError (``function`` named) when it reverts."""
        answer = call_simulate(self._chain(), sender=None, to=to, data=data)
        if answer.reverted:
            raise contracts.revert_error(function, data=answer.data, message=answer.message)
        return answer.data

    def _batch_state(self, identifier: str) -> tuple[int, bool]:
        """(taskCreatedBlock, responded) of a batch on chain; (0, False) when it does not exist."""
        state = batches_state_decode(
            self._eth_call(
                to=self.config.service_manager,
                data=batches_state_data(identifier=identifier),
                function="batchesState",
            )
        )
        return state.task_created_block, state.responded

    def _operator_state(self, block: int) -> list[OperatorState]:
        """Quorum 0's operators and their stakes at a task's block: one getOperatorState per block, as eigensdk's
        aggregation service reads the operators' AVS state once per task. (A stake call per signature and a
        total per task were 6 calls per replayed batch, the most of a restarted aggregator's time.)"""
        state = self._states.get(block)
        if state is None:
            state = operator_state_decode(
                self._eth_call(
                    to=self.config.retriever,
                    data=operator_state_data(registry=self.config.registry, block=block),
                    function="getOperatorState",
                )
            )
            with self._states_lock:
                if len(self._states) >= STATE_CACHE_BLOCKS:
                    self._states.pop(next(iter(self._states)), None)  # the oldest: tasks expire in seconds
                self._states[block] = state
        return state

    def _stake(self, operator_id: str, block: int) -> int:
        """The operator's stake at the block (0 when it was not registered in quorum 0 then)."""
        wanted = bytes.fromhex(operator_id[2:])
        return next((o.stake for o in self._operator_state(block) if o.operator_id == wanted), 0)

    def _total_stake(self, block: int) -> int:
        """The quorum's total stake at the block: the sum of its registered operators' (the registry keeps a
        deregistered operator's stake at zero)."""
        return sum(o.stake for o in self._operator_state(block))

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
