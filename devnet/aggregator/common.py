"""The aggregator's limits and the records its parts share: tasks, configuration, HTTP errors."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from eth_utils import keccak

from bls import (
    G2_GENERATOR,
    G1Point,
    g2_neg,
)
from chain.abi import TOPICS
from devnet import contracts
from devnet.state import DevnetStateError

logger = logging.getLogger("devnet.aggregator")


MAX_BODY_BYTES = 4096
DEFAULT_TASK_WINDOW = 100.0
DEFAULT_POLL_INTERVAL = 0.5
DEFAULT_RECEIPT_TIMEOUT = 30.0
DEFAULT_UNKNOWN_TASK_WAIT = 5.0
QUORUM_PERCENTAGE = contracts.QUORUM_THRESHOLD_PERCENTAGE  # 67
SUBMIT_ATTEMPTS = 5
# Tasks responded to at once, as Aligned's aggregator does (a goroutine per task): building a response (the state
# at the task's block, the non-signer indices, a gas estimate) is read-only and overlaps; sending takes a lock,
# since every response shares the aggregator's account and its nonces.
SUBMIT_THREADS = 4
# Operator states kept, one per task block (each a few hundred bytes per operator).
STATE_CACHE_BLOCKS = 1024
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
    # OperatorStateRetriever: the non-signers' indices for respondToTaskV2.
    retriever: str
    aggregator_key: str
    operator_keys: dict[str, Any]  # operatorId -> public_key_g2 (EVM-order hex dict), parsed lazily
    task_window: float = DEFAULT_TASK_WINDOW
    poll_interval: float = DEFAULT_POLL_INTERVAL
    receipt_timeout: float = DEFAULT_RECEIPT_TIMEOUT
    # Go net/rpc, as Aligned's aggregator serves its operators (None: not served, as in older devnet files).
    rpc_port: int | None = None
    unknown_task_wait: float = DEFAULT_UNKNOWN_TASK_WAIT

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> AggregatorConfig:
        try:
            return cls(
                port=int(state["aggregator"]["port"]),
                rpc_url=str(state["rpc_url"]),
                service_manager=str(state["contracts"]["service_manager"]).lower(),
                registry=str(state["contracts"]["registry"]).lower(),
                retriever=str(state["contracts"]["operator_state_retriever"]).lower(),
                aggregator_key=str(state["accounts"]["aggregator"]["private_key"]),
                operator_keys={
                    str(op["operator_id"]).lower(): op["public_key_g2"] for op in state.get("operators", [])
                },
                task_window=float(state.get("aggregator_task_window", DEFAULT_TASK_WINDOW)),
                poll_interval=float(state.get("aggregator_poll_interval", DEFAULT_POLL_INTERVAL)),
                receipt_timeout=float(state.get("aggregator_receipt_timeout", DEFAULT_RECEIPT_TIMEOUT)),
                rpc_port=int(state["aggregator"]["rpc_port"])
                if state["aggregator"].get("rpc_port")
                else None,
                unknown_task_wait=float(state.get("aggregator_unknown_task_wait", DEFAULT_UNKNOWN_TASK_WAIT)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DevnetStateError(f"the devnet file has no usable aggregator settings ({exc!r})") from exc


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
