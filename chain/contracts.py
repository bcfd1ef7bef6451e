"""The contract calls the standby responder makes, from Aligned's and EigenLayer's published interfaces.

- ``respondToTaskV2(bytes32, address, NonSignerStakesAndSignature)`` on Aligned's service manager;
- ``batchesState(bytes32)`` on the same contract;
- ``getCheckSignaturesIndices(registryCoordinator, referenceBlock, quorumNumbers, nonSignerIds)`` and
  ``getOperatorState(registryCoordinator, quorumNumbers, blockNumber)`` on EigenLayer's OperatorStateRetriever.

Encoding and decoding only (eth_abi); sending is ``chain.transactions``. Revert data is decoded against the
errors the service manager and the signature checker are known to raise, so a refusal reads as a name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import decode, encode
from eth_abi.exceptions import DecodingError
from eth_utils import keccak

# Aligned answers in quorum 0 only.
QUORUM_NUMBERS = b"\x00"

G1 = "(uint256,uint256)"
G2 = "(uint256[2],uint256[2])"
NON_SIGNER_STAKES_AND_SIGNATURE = f"(uint32[],{G1}[],{G1}[],{G2},{G1},uint32[],uint32[],uint32[][])"
RESPOND_TO_TASK_V2 = f"respondToTaskV2(bytes32,address,{NON_SIGNER_STAKES_AND_SIGNATURE})"
BATCHES_STATE = "batchesState(bytes32)"
GET_CHECK_SIGNATURES_INDICES = "getCheckSignaturesIndices(address,uint32,bytes,bytes32[])"
CHECK_SIGNATURES_INDICES = "(uint32[],uint32[],uint32[],uint32[][])"
GET_OPERATOR_STATE = "getOperatorState(address,bytes,uint32)"
OPERATORS = "(address,bytes32,uint96)[][]"

# Errors worth naming when a call reverts: the service manager's, Solidity's own, and the signature checker's.
# Unknown selectors are shown as hex.
KNOWN_ERRORS = (
    "Error(string)",
    "Panic(uint256)",
    "SenderIsNotAggregator(address,address)",
    "BatchDoesNotExist(bytes32)",
    "BatchAlreadyResponded(bytes32)",
    "InsufficientFunds(address,uint256,uint256)",
    "InvalidQuorumThreshold(uint256,uint256)",
    "ExceededMaxRespondFee(uint256,uint256)",
    # EigenLayer's checker reverts with strings (Error(string)); the devnet's contracts name theirs.
    "ReferenceBlockNotInPast(uint32,uint256)",
    "NonSignersNotSorted(uint256)",
    "NonSignerNotRegistered(bytes32,uint32)",
    "QuorumApkMismatch(bytes24,bytes24)",
    "InvalidSignature()",
    "InputArrayLengthMismatch()",
    "InputEmptyQuorumApks()",
    "IndexNotValidAtBlock(uint256,uint32)",
    "IndexOutOfRange(uint256,uint256)",
    "OperatorNotRegisteredInQuorum(bytes32,uint8,uint32)",
)


class AbiDecodeError(ValueError):
    pass


def selector(signature: str) -> bytes:
    return keccak(signature.encode())[:4]


def _types(signature: str) -> list[str]:
    """The argument types of ``name(a,b,(c,d))`` as eth_abi wants them: top-level commas only."""
    inner = signature[signature.index("(") + 1 : -1]
    types, depth, start = [], 0, 0
    for i, char in enumerate(inner):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            types.append(inner[start:i])
            start = i + 1
    if inner:
        types.append(inner[start:])
    return types


def _call_data(signature: str, args: Sequence[Any]) -> str:
    return "0x" + (selector(signature) + encode(_types(signature), list(args))).hex()


def _bytes(value: str, length: int, name: str) -> bytes:
    raw = bytes.fromhex(value[2:] if value.startswith("0x") else value)
    if len(raw) != length:
        raise ValueError(f"{name} must be {length} bytes, got {len(raw)}")
    return raw


def _result(data: str) -> bytes:
    if not isinstance(data, str) or not data.startswith("0x"):
        raise AbiDecodeError(f"call result is not hex: {data!r:.80}")
    return bytes.fromhex(data[2:])


@dataclass(frozen=True)
class NonSignerStakesAndSignature:
    """EigenLayer's struct, field for field; points as EVM integers (G2 as ([x_imag, x_real], [y_imag, y_real]))."""

    non_signer_quorum_bitmap_indices: tuple[int, ...]
    non_signer_pubkeys: tuple[tuple[int, int], ...]
    quorum_apks: tuple[tuple[int, int], ...]
    apk_g2: tuple[tuple[int, int], tuple[int, int]]
    sigma: tuple[int, int]
    quorum_apk_indices: tuple[int, ...]
    total_stake_indices: tuple[int, ...]
    non_signer_stake_indices: tuple[tuple[int, ...], ...]

    def as_abi(self) -> tuple[Any, ...]:
        return (
            list(self.non_signer_quorum_bitmap_indices),
            [tuple(p) for p in self.non_signer_pubkeys],
            [tuple(p) for p in self.quorum_apks],
            (list(self.apk_g2[0]), list(self.apk_g2[1])),
            tuple(self.sigma),
            list(self.quorum_apk_indices),
            list(self.total_stake_indices),
            [list(row) for row in self.non_signer_stake_indices],
        )

    def as_json(self) -> dict[str, Any]:
        """The struct as a dry run shows it: EigenLayer's field names, coordinates as 0x hex."""

        def g1(point: tuple[int, int]) -> dict[str, str]:
            return {"X": hex(point[0]), "Y": hex(point[1])}

        return {
            "nonSignerQuorumBitmapIndices": list(self.non_signer_quorum_bitmap_indices),
            "nonSignerPubkeys": [g1(p) for p in self.non_signer_pubkeys],
            "quorumApks": [g1(p) for p in self.quorum_apks],
            "apkG2": {
                "X": [hex(c) for c in self.apk_g2[0]],
                "Y": [hex(c) for c in self.apk_g2[1]],
            },
            "sigma": g1(self.sigma),
            "quorumApkIndices": list(self.quorum_apk_indices),
            "totalStakeIndices": list(self.total_stake_indices),
            "nonSignerStakeIndices": [list(row) for row in self.non_signer_stake_indices],
        }


@dataclass(frozen=True)
class CheckSignaturesIndices:
    non_signer_quorum_bitmap_indices: tuple[int, ...]
    quorum_apk_indices: tuple[int, ...]
    total_stake_indices: tuple[int, ...]
    non_signer_stake_indices: tuple[tuple[int, ...], ...]


def respond_to_task_v2_data(*, merkle_root: str, sender: str, params: NonSignerStakesAndSignature) -> str:
    return _call_data(
        RESPOND_TO_TASK_V2,
        [_bytes(merkle_root, 32, "batchMerkleRoot"), sender.lower(), params.as_abi()],
    )


def check_signatures_indices_data(
    *, registry: str, reference_block: int, non_signer_ids: Sequence[str]
) -> str:
    return _call_data(
        GET_CHECK_SIGNATURES_INDICES,
        [
            registry.lower(),
            reference_block,
            QUORUM_NUMBERS,
            [_bytes(operator_id, 32, "operatorId") for operator_id in non_signer_ids],
        ],
    )


def check_signatures_indices_decode(data: str) -> CheckSignaturesIndices:
    try:
        (value,) = decode([CHECK_SIGNATURES_INDICES], _result(data))
    except (DecodingError, ValueError) as exc:
        raise AbiDecodeError(f"getCheckSignaturesIndices answer undecodable: {exc}") from None
    bitmaps, apks, totals, stakes = value
    return CheckSignaturesIndices(
        non_signer_quorum_bitmap_indices=tuple(bitmaps),
        quorum_apk_indices=tuple(apks),
        total_stake_indices=tuple(totals),
        non_signer_stake_indices=tuple(tuple(row) for row in stakes),
    )


@dataclass(frozen=True)
class OperatorState:
    """OperatorStateRetriever.Operator: an operator registered in the quorum at a block, with its stake then."""

    operator: str  # lowercase 0x hex
    operator_id: bytes
    stake: int


def operator_state_data(*, registry: str, block: int) -> str:
    return _call_data(GET_OPERATOR_STATE, [registry.lower(), QUORUM_NUMBERS, block])


def operator_state_decode(data: str) -> list[OperatorState]:
    """Quorum 0's operators (the only quorum asked for)."""
    try:
        (quorums,) = decode([OPERATORS], _result(data))
        (quorum,) = quorums
    except (DecodingError, ValueError) as exc:
        raise AbiDecodeError(f"getOperatorState answer undecodable: {exc}") from None
    return [OperatorState(str(o[0]).lower(), bytes(o[1]), int(o[2])) for o in quorum]


def batches_state_data(*, identifier: str) -> str:
    return _call_data(BATCHES_STATE, [_bytes(identifier, 32, "batchIdentifierHash")])


@dataclass(frozen=True)
class BatchState:
    task_created_block: int
    responded: bool
    respond_to_task_fee_limit: int

    @property
    def exists(self) -> bool:
        return self.task_created_block != 0


def batches_state_decode(data: str) -> BatchState:
    try:
        block, responded, fee_limit = decode(["uint32", "bool", "uint256"], _result(data))
    except (DecodingError, ValueError) as exc:
        raise AbiDecodeError(f"batchesState answer undecodable: {exc}") from None
    return BatchState(task_created_block=block, responded=responded, respond_to_task_fee_limit=fee_limit)


@dataclass(frozen=True)
class Revert:
    """A decoded revert: the error's name (None when unknown) and a readable text."""

    name: str | None
    text: str


_ERRORS = {selector(signature): signature for signature in KNOWN_ERRORS}


def revert_decode(data: str | None, *, extra_errors: Sequence[str] = ()) -> Revert:
    """Name the error in revert ``data``; ``extra_errors`` are further signatures to know (``Name(types)``)."""
    if not data or data == "0x":
        return Revert(name=None, text="reverted without a reason")
    try:
        raw = _result(data)
    except (AbiDecodeError, ValueError):
        return Revert(name=None, text=f"reverted with undecodable data {data[:80]}")
    known = {**_ERRORS, **{selector(signature): signature for signature in extra_errors}}
    signature = known.get(raw[:4])
    if signature is None:
        return Revert(name=None, text=f"reverted with unknown error 0x{raw[:4].hex()} ({len(raw)} bytes)")
    name = signature[: signature.index("(")]
    try:
        args = decode(_types(signature), raw[4:])
    except (DecodingError, ValueError):
        return Revert(name=name, text=f"{name} (arguments undecodable)")
    if name == "Error":
        return Revert(name=str(args[0]), text=str(args[0]))
    shown = ", ".join("0x" + a.hex() if isinstance(a, bytes) else str(a) for a in args)
    return Revert(name=name, text=f"{name}({shown})")
