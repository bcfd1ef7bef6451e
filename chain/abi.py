"""The events the control plane ingests, from their published ABIs, and fast decoders for them.

Decoding is by hand over 32-byte words (the layouts are fixed and small); every offset and length is bounds-checked
so a malformed log raises DecodeError instead of producing a wrong row.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# keccak256 in C (safe-pysha3), through eth_hash's typed backend: eth_hash's automatic choice (and so eth_utils')
# is pycryptodome, at 16 µs a hash against 1.5, which was a third of a backfill's decoding.
from eth_hash.backends.pysha3 import backend as _keccak_backend

keccak = _keccak_backend.keccak256


class DecodeError(ValueError):
    pass


EVENT_SIGNATURES: dict[str, str] = {
    "NewBatchV3": "NewBatchV3(bytes32,address,uint32,string,uint256)",
    "NewBatchV2": "NewBatchV2(bytes32,address,uint32,string)",
    "BatchVerified": "BatchVerified(bytes32,address)",
    "NewPubkeyRegistration": "NewPubkeyRegistration(address,(uint256,uint256),(uint256[2],uint256[2]))",
    "OperatorRegistered": "OperatorRegistered(address,bytes32)",
    "OperatorDeregistered": "OperatorDeregistered(address,bytes32)",
    "OperatorStakeUpdate": "OperatorStakeUpdate(bytes32,uint8,uint96)",
    "OperatorSocketUpdate": "OperatorSocketUpdate(bytes32,string)",
}


def topic_of(signature: str) -> str:
    return "0x" + keccak(signature.encode()).hex()


TOPICS: dict[str, str] = {name: topic_of(sig) for name, sig in EVENT_SIGNATURES.items()}
NAMES_BY_TOPIC: dict[str, str] = {topic: name for name, topic in TOPICS.items()}

SERVICE_MANAGER_EVENTS = ("NewBatchV3", "NewBatchV2", "BatchVerified")
REGISTRY_EVENTS = (
    "NewPubkeyRegistration",
    "OperatorRegistered",
    "OperatorDeregistered",
    "OperatorStakeUpdate",
    "OperatorSocketUpdate",
)


def _words(data: str) -> bytes:
    if not data.startswith("0x") or len(data) % 2:
        raise DecodeError("log data is not 0x-prefixed hex")
    try:
        return bytes.fromhex(data[2:])
    except ValueError as exc:
        raise DecodeError("log data is not hex") from exc


def _word(raw: bytes, index: int) -> int:
    start = index * 32
    if start + 32 > len(raw):
        raise DecodeError(f"log data too short for word {index}")
    return int.from_bytes(raw[start : start + 32], "big")


def _address_word(raw: bytes, index: int) -> str:
    value = _word(raw, index)
    if value >> 160:
        raise DecodeError("address word has dirty high bits")
    return "0x" + value.to_bytes(20, "big").hex()


def _uint_word(raw: bytes, index: int, bits: int) -> int:
    value = _word(raw, index)
    if value >> bits:
        raise DecodeError(f"uint{bits} word out of range")
    return value


# Strings in events are chosen by whoever sent the transaction (anyone can call createNewTask; each operator sets
# its socket). They are stored escaped and capped, never refused: a string Postgres cannot hold (a NUL byte) or
# one of megabytes must not stop ingest. What was done to one is said in the event's ``_unsafe`` argument.
STRING_LIMITS = {"batchDataPointer": 4096, "socket": 1024}


def chain_string(value: bytes, *, limit: int) -> tuple[str, str]:
    """(text fit to store, what was done to it: "" when nothing)."""
    notes = []
    size = len(value)
    value = value[:limit]  # a byte is at least a character: never decode (or escape) more than is kept
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = value.decode("utf-8", errors="backslashreplace")
        if size <= limit or not _cut_mid_character(value):
            notes.append("not UTF-8 (bytes escaped as \\xNN)")
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
        notes.append("NUL bytes escaped")
    if size > limit or len(text) > limit:
        notes.append(f"truncated from {size} bytes to {limit} characters")
        text = text[:limit]
    return text, "; ".join(notes)


def _cut_mid_character(value: bytes) -> bool:
    """Whether ``value`` is valid UTF-8 but for a multi-byte character its cut end splits."""
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(value) - 3 and exc.reason == "unexpected end of data"
    return False


def _string_at(raw: bytes, head_index: int, *, name: str, unsafe: dict[str, str]) -> str:
    offset = _word(raw, head_index)
    if offset % 32 or offset + 32 > len(raw):
        raise DecodeError("string offset out of range")
    length = int.from_bytes(raw[offset : offset + 32], "big")
    end = offset + 32 + length
    if end > len(raw):
        raise DecodeError("string length out of range")
    text, note = chain_string(raw[offset + 32 : end], limit=STRING_LIMITS[name])
    if note:
        unsafe[name] = note
    return text


def _with_unsafe(args: dict[str, Any], unsafe: dict[str, str]) -> dict[str, Any]:
    return {**args, "_unsafe": unsafe} if unsafe else args


# A regex, not a per-character check: every log of a backfill goes through here (a sixth of its decoding time).
_TOPIC_HEX = re.compile(r"0x[0-9a-f]{64}")


def _topic(topics: tuple[str, ...], index: int) -> str:
    if len(topics) <= index:
        raise DecodeError(f"log has no topic {index}")
    topic = topics[index].lower()
    if not _TOPIC_HEX.fullmatch(topic):
        raise DecodeError(f"topic {index} is not 32 bytes of hex")
    return topic


def _topic_address(topics: tuple[str, ...], index: int) -> str:
    value = int(_topic(topics, index), 16)
    if value >> 160:
        raise DecodeError("address topic has dirty high bits")
    return "0x" + value.to_bytes(20, "big").hex()


def _hex32(value: int) -> str:
    return "0x" + value.to_bytes(32, "big").hex()


def decode_new_batch_v3(topics: tuple[str, ...], data: str) -> dict[str, Any]:
    raw, unsafe = _words(data), dict[str, str]()
    args = {
        "batchMerkleRoot": _topic(topics, 1),
        "senderAddress": _address_word(raw, 0),
        "taskCreatedBlock": _uint_word(raw, 1, 32),
        "batchDataPointer": _string_at(raw, 2, name="batchDataPointer", unsafe=unsafe),
        "respondToTaskFeeLimit": str(_word(raw, 3)),
    }
    return _with_unsafe(args, unsafe)


def decode_new_batch_v2(topics: tuple[str, ...], data: str) -> dict[str, Any]:
    raw, unsafe = _words(data), dict[str, str]()
    args = {
        "batchMerkleRoot": _topic(topics, 1),
        "senderAddress": _address_word(raw, 0),
        "taskCreatedBlock": _uint_word(raw, 1, 32),
        "batchDataPointer": _string_at(raw, 2, name="batchDataPointer", unsafe=unsafe),
    }
    return _with_unsafe(args, unsafe)


def decode_batch_verified(topics: tuple[str, ...], data: str) -> dict[str, Any]:
    raw = _words(data)
    return {"batchMerkleRoot": _topic(topics, 1), "senderAddress": _address_word(raw, 0)}


def decode_new_pubkey_registration(topics: tuple[str, ...], data: str) -> dict[str, Any]:
    raw = _words(data)
    # (X, Y) then (X[0], X[1], Y[0], Y[1]): G2 coordinates stay in EVM order [imag, real].
    return {
        "operator": _topic_address(topics, 1),
        "pubkeyG1": {"X": _hex32(_word(raw, 0)), "Y": _hex32(_word(raw, 1))},
        "pubkeyG2": {
            "X": [_hex32(_word(raw, 2)), _hex32(_word(raw, 3))],
            "Y": [_hex32(_word(raw, 4)), _hex32(_word(raw, 5))],
        },
    }


def decode_operator_registration(topics: tuple[str, ...], data: str) -> dict[str, Any]:
    return {"operator": _topic_address(topics, 1), "operatorId": _topic(topics, 2)}


def decode_operator_stake_update(topics: tuple[str, ...], data: str) -> dict[str, Any]:
    raw = _words(data)
    return {
        "operatorId": _topic(topics, 1),
        "quorumNumber": _uint_word(raw, 0, 8),
        "stake": str(_uint_word(raw, 1, 96)),
    }


def decode_operator_socket_update(topics: tuple[str, ...], data: str) -> dict[str, Any]:
    raw, unsafe = _words(data), dict[str, str]()
    args = {"operatorId": _topic(topics, 1), "socket": _string_at(raw, 0, name="socket", unsafe=unsafe)}
    return _with_unsafe(args, unsafe)


DECODERS: dict[str, Callable[[tuple[str, ...], str], dict[str, Any]]] = {
    "NewBatchV3": decode_new_batch_v3,
    "NewBatchV2": decode_new_batch_v2,
    "BatchVerified": decode_batch_verified,
    "NewPubkeyRegistration": decode_new_pubkey_registration,
    "OperatorRegistered": decode_operator_registration,
    "OperatorDeregistered": decode_operator_registration,
    "OperatorStakeUpdate": decode_operator_stake_update,
    "OperatorSocketUpdate": decode_operator_socket_update,
}


@dataclass(frozen=True)
class DecodedEvent:
    name: str
    args: dict[str, Any]


def decode_log(topics: tuple[str, ...], data: str) -> DecodedEvent | None:
    """The decoded event, or None for a topic0 we do not ingest. Raises DecodeError for a malformed log."""
    if not topics:
        return None
    name = NAMES_BY_TOPIC.get(topics[0].lower())
    if name is None:
        return None
    return DecodedEvent(name=name, args=DECODERS[name](topics, data))


def batch_identifier(merkle_root: str, sender: str) -> str:
    """keccak256(abi.encodePacked(batchMerkleRoot, senderAddress)), lowercase 0x hex."""
    return "0x" + keccak(bytes.fromhex(merkle_root[2:]) + bytes.fromhex(sender[2:])).hex()


def operator_id_of(pubkey_g1: dict[str, str]) -> str:
    """operatorId = keccak256(abi.encodePacked(X, Y))."""
    return (
        "0x"
        + keccak(
            int(pubkey_g1["X"], 16).to_bytes(32, "big") + int(pubkey_g1["Y"], 16).to_bytes(32, "big")
        ).hex()
    )
