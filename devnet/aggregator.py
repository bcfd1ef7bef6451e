"""The devnet's aggregator: collects operators' BLS signatures per batch and answers the task on chain.

Like Aligned's aggregator it keeps tasks and partial aggregates **in memory only** (deliberately: losing them
on a crash is one of the failures the control plane exists to repair), learns of tasks by following
NewBatchV3 from the chain head *at its start* (batches created while it was down are never picked up),
and forgets a task that has not reached quorum within a window (100 s by default).

HTTP JSON on 127.0.0.1:``state["aggregator"]["port"]``:

- ``POST /signatures``: one signed task response (Aligned's JSON). 200 ``accepted``/``duplicate``/
  ``responded`` is the explicit acknowledgement; 404 ``unknown_task``, 410 ``task_expired``,
  403 ``not_an_operator``, 400 ``invalid_signature`` (or a parse error), 413 for a body over 4 KB,
  503 ``chain_unavailable``.
- ``POST /tasks``: announce a task (the control plane's replay): ``created``/``exists``/``responded``,
  404 ``unknown_batch`` when the chain has no such batch.
- ``GET /health``: boot id, start time and every task held, so a restart is visible.

When the signers hold at least 67% of the stake at ``taskCreatedBlock`` a background worker submits
``respondToTaskV2`` (one submission at a time, so nonces never race), never for a batch the chain already
shows as responded, retrying transport failures with the same nonce and a fee bumped x1.25.
"""

from __future__ import annotations

import json
import logging
import queue
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, cast

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError
from web3.types import Nonce, TxParams, TxReceipt, Wei

from bls import (
    G2_GENERATOR,
    G1Point,
    G2Point,
    InvalidPoint,
    PairingBackend,
    aggregate_g1,
    aggregate_g2,
    g2_neg,
    hash_to_g1,
    pairing_backend,
)
from chain import ChainClient, RpcError
from chain.abi import TOPICS, DecodeError, decode_batch_verified, decode_new_batch_v3
from devnet import contracts
from devnet.contracts import ContractRevertError
from devnet.state import DevnetStateError
from intake.parse import IntakeError, signed_response_parse

logger = logging.getLogger("devnet.aggregator")

MAX_BODY_BYTES = 4096
DEFAULT_TASK_WINDOW = 100.0
DEFAULT_POLL_INTERVAL = 0.5
DEFAULT_RECEIPT_TIMEOUT = 30.0
QUORUM_PERCENTAGE = contracts.QUORUM_THRESHOLD_PERCENTAGE  # 67
SUBMIT_ATTEMPTS = 5
FEE_BUMP_NUMERATOR = 5  # x1.25 per retry (a replacement needs >= +10% on both fees)
FEE_BUMP_DENOMINATOR = 4
PRIORITY_FEE = 10**9  # 1 gwei
# A submission that failed on transport errors five times is tried again this long after, while in window.
RESUBMIT_DELAY = 5.0
# Finished tasks (responded or expired) are remembered this long, so late signatures get 200/410, not 404.
MIN_TOMBSTONE_SECONDS = 600.0

_NEG_G2 = g2_neg(G2_GENERATOR)
_NEW_BATCH_V3 = TOPICS["NewBatchV3"]
_BATCH_VERIFIED = TOPICS["BatchVerified"]


class _GaveUp(Exception):
    """A submission failed SUBMIT_ATTEMPTS times on something other than a revert."""


class HttpError(Exception):
    """An answer other than 200, with its JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("error", ""))
        self.status = status
        self.body = body


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def _identifier(root: str, sender: str) -> str:
    return _hex(keccak(bytes.fromhex(root[2:]) + bytes.fromhex(sender[2:])))


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "n/a"


@dataclass
class Task:
    identifier: str  # batchIdentifierHash, lowercase 0x hex
    root: str
    sender: str
    task_created_block: int
    created_at: float  # time.time() when this aggregator learned of it
    signatures: dict[str, G1Point] = field(default_factory=dict)  # operatorId -> verified signature
    stakes: dict[str, int] = field(default_factory=dict)  # operatorId -> stake at taskCreatedBlock
    total_stake: int | None = None
    responded: bool = False
    expired: bool = False
    finished_at: float | None = None
    submitting: bool = False  # queued for, or in, the submitter
    resubmit_at: float | None = None  # set after transport failures exhausted the retries
    tx_hash: str | None = None

    @property
    def signed_stake(self) -> int:
        return sum(self.stakes.values())

    def has_quorum(self) -> bool:
        total = self.total_stake or 0
        return total > 0 and self.signed_stake * 100 >= total * QUORUM_PERCENTAGE

    def as_json(self) -> dict[str, Any]:
        return {
            "batchIdentifierHash": self.identifier,
            "batchMerkleRoot": self.root,
            "senderAddress": self.sender,
            "taskCreatedBlock": self.task_created_block,
            "createdAt": self.created_at,
            "signers": sorted(self.signatures),
            "signedStake": str(self.signed_stake),
            "totalStake": None if self.total_stake is None else str(self.total_stake),
            "responded": self.responded,
            "expired": self.expired,
            "txHash": self.tx_hash,
        }


@dataclass(frozen=True)
class AggregatorConfig:
    port: int
    rpc_url: str
    service_manager: str
    registry: str
    aggregator_key: str
    operator_keys: dict[str, Any]  # operatorId -> public_key_g2 (EVM-order hex dict), parsed lazily
    task_window: float = DEFAULT_TASK_WINDOW
    poll_interval: float = DEFAULT_POLL_INTERVAL
    receipt_timeout: float = DEFAULT_RECEIPT_TIMEOUT

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> AggregatorConfig:
        try:
            return cls(
                port=int(state["aggregator"]["port"]),
                rpc_url=str(state["rpc_url"]),
                service_manager=str(state["contracts"]["service_manager"]).lower(),
                registry=str(state["contracts"]["registry"]).lower(),
                aggregator_key=str(state["accounts"]["aggregator"]["private_key"]),
                operator_keys={
                    str(op["operator_id"]).lower(): op["public_key_g2"] for op in state.get("operators", [])
                },
                task_window=float(state.get("aggregator_task_window", DEFAULT_TASK_WINDOW)),
                poll_interval=float(state.get("aggregator_poll_interval", DEFAULT_POLL_INTERVAL)),
                receipt_timeout=float(state.get("aggregator_receipt_timeout", DEFAULT_RECEIPT_TIMEOUT)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DevnetStateError(f"the devnet file has no usable aggregator settings ({exc!r})") from exc


class AggregatorNode:
    """One aggregator process's worth of state and threads; ``start()`` returns once it listens."""

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
        self._local = threading.local()
        self._keys: dict[str, G2Point] = {}
        self._stake_cache: dict[tuple[str, int], int] = {}
        self._total_cache: dict[int, int] = {}
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self.next_block: int | None = None

    # -- lifecycle ------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self.config.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.config.port}"

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("aggregator already started")
        # Follow the chain from its head now: what was created before this start is never seen (as upstream).
        client = self._client()
        try:
            self.next_block = client.block_number() + 1
        finally:
            client.close()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.config.port), _make_handler(self))
        self._server.daemon_threads = True
        self.started_at = time.time()
        for name, target in (
            ("aggregator-http", self._server_loop),
            ("aggregator-follow", self._follow_loop),
            ("aggregator-expire", self._expire_loop),
            ("aggregator-submit", self._submit_loop),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        logger.info(
            "aggregator %s listening on %s, following NewBatchV3 from block %d, task window %gs",
            self.boot_id,
            self.url,
            self.next_block,
            self.config.task_window,
        )

    def _server_loop(self) -> None:
        assert self._server is not None
        self._server.serve_forever(poll_interval=0.1)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every thread; all tasks and partial aggregates are dropped (deliberately)."""
        self._stop.set()
        self._jobs.put(None)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        with self._lock:
            held = len(self._tasks)
            self._tasks.clear()
        logger.info("aggregator %s stopped; %d task(s) held in memory are gone", self.boot_id, held)

    def __enter__(self) -> AggregatorNode:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- chain access -----------------------------------------------------------------------------------

    def _client(self) -> ChainClient:
        return ChainClient(
            self.config.rpc_url, timeout=5.0, max_attempts=2, backoff_base=0.1, backoff_cap=0.5
        )

    def _w3(self) -> Web3:
        """A Web3 per thread (providers keep sessions that are not meant to be shared)."""
        w3 = getattr(self._local, "w3", None)
        if w3 is None:
            w3 = Web3(Web3.HTTPProvider(self.config.rpc_url, request_kwargs={"timeout": 10}))
            self._local.w3 = w3
        return cast(Web3, w3)

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
                self._keys[operator_id] = G2Point.from_hex(raw)
            except InvalidPoint:
                logger.error("operator %s has an invalid G2 key in the devnet file", operator_id)
                return None
        return self._keys[operator_id]

    # -- tasks ------------------------------------------------------------------------------------------

    def task_add(
        self,
        *,
        root: str,
        sender: str,
        task_created_block: int,
        source: str,
        total_stake: int | None = None,
    ) -> tuple[Task, bool]:
        """The task for (root, sender), created (or revived after expiry) when needed; (task, created)."""
        identifier = _identifier(root, sender)
        with self._lock:
            task = self._tasks.get(identifier)
            if task is not None and not task.expired:
                if task.total_stake is None:
                    task.total_stake = total_stake
                return task, False
            task = Task(
                identifier=identifier,
                root=root,
                sender=sender,
                task_created_block=task_created_block,
                created_at=time.time(),
                total_stake=total_stake,
            )
            self._tasks[identifier] = task
        logger.info("task %s (batch %s, block %d) from %s", identifier, root, task_created_block, source)
        return task, True

    def _mark_responded(self, identifier: str, tx_hash: str | None = None) -> None:
        with self._lock:
            task = self._tasks.get(identifier)
            if task is None:
                return
            # The follower may see BatchVerified before the submitter gets its receipt: keep the hash.
            task.tx_hash = tx_hash or task.tx_hash
            if not task.responded:
                task.responded = True
                task.expired = False
                task.finished_at = time.time()

    def tasks_snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            tasks = sorted(self._tasks.values(), key=lambda t: t.created_at)
            return [task.as_json() for task in tasks]

    def health(self) -> dict[str, Any]:
        return {"bootId": self.boot_id, "startedAt": self.started_at, "tasks": self.tasks_snapshot()}

    # -- following the chain --------------------------------------------------------------------------

    def _follow_loop(self) -> None:
        client = self._client()
        try:
            while not self._stop.is_set():
                try:
                    self.follow_once(client)
                except (RpcError, DecodeError) as exc:
                    logger.warning("could not read new batches (%s); retrying", exc)
                except Exception:
                    logger.exception("unexpected error while following the chain")
                self._stop.wait(self.config.poll_interval)
        finally:
            client.close()

    def follow_once(self, client: ChainClient) -> None:
        assert self.next_block is not None
        head = client.block_number()
        if head < self.next_block:
            return
        to_block = min(head, self.next_block + 1999)
        logs = client.get_logs(
            addresses=[self.config.service_manager],
            topics=[[_NEW_BATCH_V3, _BATCH_VERIFIED]],
            from_block=self.next_block,
            to_block=to_block,
        )
        for log in logs:
            if log.removed:
                continue
            if log.topics[0] == _NEW_BATCH_V3:
                event = decode_new_batch_v3(log.topics, log.data)
                block = int(event["taskCreatedBlock"])
                # Looked up before the task is published, so /health never shows a task without its
                # total; best effort: a signature fetches it again if this failed.
                total: int | None = None
                try:
                    total = self._total_stake(block)
                except Exception as exc:
                    logger.warning("total stake at block %d unknown for now (%s)", block, exc)
                self.task_add(
                    root=event["batchMerkleRoot"],
                    sender=event["senderAddress"],
                    task_created_block=block,
                    source="NewBatchV3",
                    total_stake=total,
                )
            else:
                event = decode_batch_verified(log.topics, log.data)
                self._mark_responded(_identifier(event["batchMerkleRoot"], event["senderAddress"]))
        self.next_block = to_block + 1

    # -- expiry -----------------------------------------------------------------------------------------

    def _expire_loop(self) -> None:
        tick = max(0.05, min(1.0, self.config.task_window / 10))
        while not self._stop.wait(tick):
            self.expire_due(now=time.time())

    def _expire_if_due(self, task: Task, now: float) -> bool:
        """Expire ``task`` if its window is over (call with the lock held); True if it is expired."""
        if task.expired:
            return True
        if task.responded or task.submitting or now - task.created_at < self.config.task_window:
            return False
        held = len(task.signatures)
        missing = "a response" if task.has_quorum() else "quorum"
        task.expired = True
        task.finished_at = now
        task.signatures.clear()
        task.stakes.clear()
        logger.warning(
            "task %s expired after %g s without %s: lost (batch %s, %d signature(s) dropped)",
            task.identifier,
            self.config.task_window,
            missing,
            task.root,
            held,
        )
        return True

    def expire_due(self, *, now: float) -> None:
        tombstone = max(MIN_TOMBSTONE_SECONDS, 10 * self.config.task_window)
        resubmit: list[str] = []
        with self._lock:
            for identifier, task in list(self._tasks.items()):
                self._expire_if_due(task, now)
                if task.finished_at is not None and now - task.finished_at > tombstone:
                    del self._tasks[identifier]
                elif (
                    task.resubmit_at is not None
                    and now >= task.resubmit_at
                    and not (task.responded or task.expired or task.submitting)
                ):
                    task.resubmit_at = None
                    task.submitting = True
                    resubmit.append(identifier)
        for identifier in resubmit:
            self._jobs.put(identifier)

    # -- signatures -------------------------------------------------------------------------------------

    def _answer(self, status: str, task: Task) -> dict[str, Any]:
        return {
            "status": status,
            "bootId": self.boot_id,
            "batchIdentifierHash": task.identifier,
            "signedStake": str(task.signed_stake),
            "totalStake": None if task.total_stake is None else str(task.total_stake),
        }

    def _chain_unavailable(self, exc: Exception) -> HttpError:
        return HttpError(
            503, {"error": f"chain unavailable: {exc}", "code": "chain_unavailable", "bootId": self.boot_id}
        )

    def _expired(self, identifier: str) -> HttpError:
        return HttpError(
            410,
            {
                "error": f"task expired after {self.config.task_window:g} s",
                "code": "task_expired",
                "batchIdentifierHash": identifier,
                "bootId": self.boot_id,
            },
        )

    def signature_receive(self, raw: bytes) -> dict[str, Any]:
        """Handle one signed response; returns the 200 body or raises HttpError."""
        try:
            response = signed_response_parse(raw)
        except IntakeError as exc:
            raise HttpError(exc.status, {**exc.as_json(), "code": "bad_request"}) from None
        identifier = response.batch_identifier
        operator_id = response.operator_id
        with self._lock:
            task = self._tasks.get(identifier)
            if task is not None:
                self._expire_if_due(task, time.time())
        if task is None:
            raise HttpError(
                404,
                {
                    "error": "unknown task",
                    "code": "unknown_task",
                    "batchIdentifierHash": identifier,
                    "bootId": self.boot_id,
                },
            )
        if task.expired:
            raise self._expired(identifier)
        if task.responded:
            return self._answer("responded", task)

        public_key = self._public_key(operator_id)
        try:
            stake = self._stake(operator_id, task.task_created_block) if public_key is not None else 0
            total = self._total_stake(task.task_created_block)
        except Exception as exc:
            raise self._chain_unavailable(exc) from None
        if public_key is None or stake == 0:
            raise HttpError(
                403,
                {
                    "error": f"{operator_id} is not an operator with stake at block {task.task_created_block}",
                    "code": "not_an_operator",
                    "operatorId": operator_id,
                    "bootId": self.boot_id,
                },
            )
        known = task.signatures.get(operator_id)
        if known is not None and known == response.signature:
            return self._answer("duplicate", task)
        # BLS is deterministic: a second, different signature of one operator can only be invalid, and
        # since only verified signatures are kept, an invalid one never displaces or blocks a valid one.
        message = bytes.fromhex(identifier[2:])
        if not self.backend.pairing_check([(response.signature, _NEG_G2), (hash_to_g1(message), public_key)]):
            raise HttpError(
                400,
                {
                    "error": "the signature does not verify against the operator's key",
                    "code": "invalid_signature",
                    "operatorId": operator_id,
                    "batchIdentifierHash": identifier,
                    "bootId": self.boot_id,
                },
            )
        submit = False
        with self._lock:
            # Look again: it may have expired (or expired and been revived) while this request verified.
            current = self._tasks.get(identifier)
            if current is None or self._expire_if_due(current, time.time()):
                raise self._expired(identifier)
            task = current
            task.total_stake = total
            if task.responded:
                return self._answer("responded", task)
            status = "duplicate" if operator_id in task.signatures else "accepted"
            task.signatures[operator_id] = response.signature
            task.stakes[operator_id] = stake
            if task.has_quorum() and not task.submitting:
                task.submitting = True
                task.resubmit_at = None
                submit = True
            answer = self._answer(status, task)
        if submit:
            self._jobs.put(identifier)
        return answer

    def task_announce(self, raw: bytes) -> dict[str, Any]:
        """Handle POST /tasks {"batchMerkleRoot","senderAddress","taskCreatedBlock"}."""
        try:
            document = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise HttpError(400, {"error": "body is not valid JSON", "code": "bad_request"}) from None
        if not isinstance(document, dict):
            raise HttpError(400, {"error": "body must be a JSON object", "code": "bad_request"})
        root = document.get("batchMerkleRoot")
        sender = document.get("senderAddress")
        block = document.get("taskCreatedBlock")
        if not (isinstance(root, str) and _is_hex(root, 32)):
            raise HttpError(400, _bad_field("batchMerkleRoot", "0x and 64 hex digits"))
        if not (isinstance(sender, str) and _is_hex(sender, 20)):
            raise HttpError(400, _bad_field("senderAddress", "0x and 40 hex digits"))
        if isinstance(block, str) and block.isdigit():
            block = int(block)
        if not isinstance(block, int) or isinstance(block, bool) or not 0 < block < 2**32:
            raise HttpError(400, _bad_field("taskCreatedBlock", "a block number"))
        root, sender = root.lower(), sender.lower()
        identifier = _identifier(root, sender)
        with self._lock:
            task = self._tasks.get(identifier)
            if task is not None:
                self._expire_if_due(task, time.time())
        if task is not None and task.responded:
            return self._task_answer("responded", task.identifier, task.task_created_block)
        if task is not None and not task.expired:
            return self._task_answer("exists", task.identifier, task.task_created_block)
        try:
            chain_block, responded = self._batch_state(identifier)
        except Exception as exc:
            raise self._chain_unavailable(exc) from None
        if chain_block == 0:
            raise HttpError(
                404,
                {
                    "error": "no such batch on chain",
                    "code": "unknown_batch",
                    "batchIdentifierHash": identifier,
                    "bootId": self.boot_id,
                },
            )
        if responded:
            return self._task_answer("responded", identifier, chain_block)
        if chain_block != block:
            logger.warning(
                "task %s announced with taskCreatedBlock %d, the chain says %d: using the chain's",
                identifier,
                block,
                chain_block,
            )
        task, created = self.task_add(
            root=root, sender=sender, task_created_block=chain_block, source="an announcement"
        )
        return self._task_answer("created" if created else "exists", identifier, task.task_created_block)

    def _task_answer(self, status: str, identifier: str, block: int) -> dict[str, Any]:
        return {
            "status": status,
            "bootId": self.boot_id,
            "batchIdentifierHash": identifier,
            "taskCreatedBlock": block,
        }

    # -- responding on chain ----------------------------------------------------------------------------

    def _submit_loop(self) -> None:
        while not self._stop.is_set():
            identifier = self._jobs.get()
            if identifier is None:
                return
            try:
                self.submit(identifier)
            except Exception:
                logger.exception("unexpected error while responding to task %s", identifier)
                self._submission_over(identifier, resubmit=True)

    def _submission_over(self, identifier: str, *, resubmit: bool) -> None:
        with self._lock:
            task = self._tasks.get(identifier)
            if task is not None:
                task.submitting = False
                if resubmit and not task.responded:
                    task.resubmit_at = time.time() + RESUBMIT_DELAY

    def submit(self, identifier: str) -> None:
        """Respond to one task that has quorum, unless the chain already has a response for it."""
        with self._lock:
            task = self._tasks.get(identifier)
            if task is None or task.responded or task.expired or not task.has_quorum():
                if task is not None:
                    task.submitting = False
                return
            signers = sorted(task.signatures)
            signatures = [task.signatures[s] for s in signers]
            signed, total = task.signed_stake, task.total_stake or 0
            root, sender = task.root, task.sender
        keys = [self._public_key(s) for s in signers]
        w3 = self._w3()
        try:
            _, responded = self._batch_state(identifier)
        except Exception as exc:
            logger.warning("batch %s: cannot read its state on chain (%s); will try again", root, exc)
            self._submission_over(identifier, resubmit=True)
            return
        if responded:
            logger.info("batch %s is already verified on chain: not responding again", root)
            self._mark_responded(identifier)
            self._submission_over(identifier, resubmit=False)
            return
        function = contracts.service_manager_contract(
            w3, self.config.service_manager
        ).functions.respondToTaskV2(
            bytes.fromhex(root[2:]),
            Web3.to_checksum_address(sender),
            (
                [bytes.fromhex(s[2:]) for s in signers],
                aggregate_g2(k for k in keys if k is not None).to_evm(),
                aggregate_g1(signatures).to_evm(),
            ),
        )
        stake_text = f"{len(signers)} signers, {_percent(signed, total)} stake"
        try:
            receipt = self._send_with_retries(w3, function, identifier=identifier, root=root)
        except _GaveUp:
            self._submission_over(identifier, resubmit=True)
            return
        except ContractRevertError as exc:
            if exc.error_name == "BatchAlreadyResponded":
                logger.info("batch %s was responded by someone else first: not responding again", root)
                self._mark_responded(identifier)
                self._submission_over(identifier, resubmit=False)
            else:
                logger.error(
                    "RESPONSE REVERTED for batch %s (%s): %s; keeping the task, more signatures may fix it",
                    root,
                    stake_text,
                    exc,
                )
                self._submission_over(identifier, resubmit=False)
            return
        if receipt is None:  # the chain shows a response (an earlier attempt of ours was mined)
            logger.info("batch %s responded by an earlier attempt (%s)", root, stake_text)
            self._mark_responded(identifier)
            self._submission_over(identifier, resubmit=False)
            return
        tx_hash = Web3.to_hex(receipt["transactionHash"])
        self._mark_responded(identifier, tx_hash)
        self._submission_over(identifier, resubmit=False)
        logger.info("batch %s responded in tx %s (%s)", root, tx_hash, stake_text)

    def _send_with_retries(
        self, w3: Web3, function: ContractFunction, *, identifier: str, root: str
    ) -> TxReceipt | None:
        """Send ``function`` with one nonce, bumping the fees on transport failures.

        A retry reuses the nonce, so it replaces a transaction stuck in the mempool rather than queueing
        behind it. Returns the receipt, or None when the batch turned out responded (an earlier attempt was
        mined). Raises ContractRevertError on a revert and _GaveUp after SUBMIT_ATTEMPTS failures.
        """
        base_fee = int(w3.eth.get_block("latest").get("baseFeePerGas", 0) or 0)
        max_fee = 2 * base_fee + PRIORITY_FEE
        priority_fee = PRIORITY_FEE
        nonce: int | None = None
        gas: int | None = None
        for attempt in range(1, SUBMIT_ATTEMPTS + 1):
            try:
                if gas is None:
                    gas = self._estimate_gas(function)
                if nonce is None:
                    nonce = w3.eth.get_transaction_count(self.account.address, "pending")
                return self._send_once(
                    w3, function, nonce=nonce, gas=gas, max_fee=max_fee, priority_fee=priority_fee
                )
            except ContractRevertError:
                raise
            except Exception as exc:
                if self._stop.is_set():
                    raise _GaveUp from exc
                try:
                    _, responded = self._batch_state(identifier)
                except Exception:
                    responded = False
                if responded:
                    return None
                if "nonce too low" in str(exc).lower():
                    nonce = None
                if attempt == SUBMIT_ATTEMPTS:
                    logger.error(
                        "respondToTaskV2 for batch %s failed %d times (last: %s); trying again in %gs",
                        root,
                        attempt,
                        _short(exc),
                        RESUBMIT_DELAY,
                    )
                    raise _GaveUp from exc
                max_fee = max_fee * FEE_BUMP_NUMERATOR // FEE_BUMP_DENOMINATOR
                priority_fee = priority_fee * FEE_BUMP_NUMERATOR // FEE_BUMP_DENOMINATOR
                logger.warning(
                    "respondToTaskV2 for batch %s failed (%s); retry %d/%d with max fee %.3f gwei",
                    root,
                    _short(exc),
                    attempt + 1,
                    SUBMIT_ATTEMPTS,
                    max_fee / 1e9,
                )
                self._stop.wait(0.2 * attempt)
        raise _GaveUp

    def _estimate_gas(self, function: ContractFunction) -> int:
        try:
            estimate = function.estimate_gas({"from": self.account.address}, block_identifier="pending")
        except ContractLogicError as exc:
            raise _revert_error(exc) from exc
        return int(estimate) * 12 // 10

    def _send_once(
        self, w3: Web3, function: ContractFunction, *, nonce: int, gas: int, max_fee: int, priority_fee: int
    ) -> TxReceipt:
        params: TxParams = {
            "from": self.account.address,
            "chainId": w3.eth.chain_id,
            "nonce": Nonce(nonce),
            "gas": gas,
            "maxFeePerGas": Wei(max_fee),
            "maxPriorityFeePerGas": Wei(min(priority_fee, max_fee)),
            "value": Wei(0),
        }
        tx = function.build_transaction(params)
        signed = self.account.sign_transaction(cast(dict[str, Any], tx))
        tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.config.receipt_timeout)
        if receipt["status"] != 1:
            # Replay on the state before its block to learn why it failed.
            replay: TxParams = {"from": tx["from"], "to": tx["to"], "data": tx["data"], "gas": tx["gas"]}
            try:
                w3.eth.call(replay, block_identifier=max(int(receipt["blockNumber"]) - 1, 0))
            except ContractLogicError as exc:
                raise _revert_error(exc, receipt) from exc
            raise ContractRevertError(
                function="respondToTaskV2", error_name=None, receipt=receipt, detail="mined and failed"
            )
        return receipt


def _revert_error(exc: ContractLogicError, receipt: TxReceipt | None = None) -> ContractRevertError:
    data = exc.data.get("data") if isinstance(exc.data, dict) else exc.data
    data = data if isinstance(data, str) else None
    name, args = contracts.decode_revert(data)
    return ContractRevertError(
        function="respondToTaskV2",
        error_name=name,
        error_args=args,
        data=data or "0x",
        receipt=receipt,
        detail="" if name else str(exc.message or exc),
    )


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 200 else text[:197] + "..."


def _is_hex(value: str, size: int) -> bool:
    if len(value) != 2 + 2 * size or not value.startswith("0x"):
        return False
    try:
        bytes.fromhex(value[2:])
    except ValueError:
        return False
    return True


def _bad_field(name: str, expected: str) -> dict[str, Any]:
    return {"error": f"{name} must be {expected}", "field": name, "code": "bad_request"}


def _make_handler(node: AggregatorNode) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "devnet-aggregator"

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                raise HttpError(400, {"error": "bad Content-Length", "code": "bad_request"}) from None
            if length > MAX_BODY_BYTES:
                self.close_connection = True
                raise HttpError(413, {"error": f"body over {MAX_BODY_BYTES} bytes", "code": "body_too_large"})
            if length < 0:
                raise HttpError(400, {"error": "bad Content-Length", "code": "bad_request"})
            return self.rfile.read(length)

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] == "/health":
                self._send(200, node.health())
            else:
                self._send(404, {"error": "not found", "code": "not_found"})

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            routes = {"/signatures": node.signature_receive, "/tasks": node.task_announce}
            route = routes.get(path)
            if route is None:
                self._send(404, {"error": "not found", "code": "not_found"})
                return
            try:
                self._send(200, route(self._body()))
            except HttpError as exc:
                self._send(exc.status, exc.body)
            except Exception:
                logger.exception("error handling POST %s", path)
                self._send(500, {"error": "internal error", "code": "internal"})

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("http: " + format, *args)

    return Handler


def run_aggregator(*, state: dict[str, Any], stop: threading.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or ``stop``); everything held is lost on exit, as upstream."""
    stopping = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():

        def _stop(signum: int, frame: FrameType | None) -> None:
            stopping.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    node = AggregatorNode(state=state)
    node.start()
    try:
        while not stopping.wait(1.0):
            pass
    finally:
        node.stop()
