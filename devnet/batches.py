"""The devnet's batches: real, cheap-to-check proofs under a keccak Merkle root.

A proof is a signed statement: an EIP-191 signature by ``signer`` over ``statement``. It is valid when the
signature recovers to ``signer``. A leaf is keccak256 of the proof's canonical JSON; the tree pads to a power of
two by repeating the last leaf (as Aligned's batcher does) and hashes pairs as keccak256(left ‖ right).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak

BATCH_FORMAT_VERSION = 1


class BatchFormatError(ValueError):
    """The downloaded batch is not a well-formed batch document."""


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def proof_leaf(proof: dict[str, Any]) -> bytes:
    return keccak(canonical_json(proof))


def merkle_root(leaves: list[bytes]) -> bytes:
    if not leaves:
        raise BatchFormatError("a batch holds at least one proof")
    level = list(leaves)
    while len(level) & (len(level) - 1):
        level.append(level[-1])
    while len(level) > 1:
        level = [keccak(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def make_proof(*, rng: random.Random, valid: bool = True) -> dict[str, Any]:
    """A signed statement; an invalid one carries a signature by a different key."""
    signer = Account.from_key(rng.randbytes(32))
    statement = f"statement {rng.getrandbits(64):016x}"
    signature_key = signer if valid else Account.from_key(rng.randbytes(32))
    signed = signature_key.sign_message(encode_defunct(text=statement))
    return {
        "statement": statement,
        "signer": signer.address.lower(),
        "signature": "0x" + bytes(signed.signature).hex(),
    }


def proof_is_valid(proof: dict[str, Any]) -> bool:
    try:
        recovered = Account.recover_message(
            encode_defunct(text=str(proof["statement"])), signature=bytes.fromhex(str(proof["signature"])[2:])
        )
    except (KeyError, ValueError, TypeError):
        return False
    return bool(recovered.lower() == str(proof["signer"]).lower())


@dataclass(frozen=True)
class Batch:
    proofs: list[dict[str, Any]]

    @property
    def merkle_root(self) -> bytes:
        return merkle_root([proof_leaf(proof) for proof in self.proofs])

    def to_json(self) -> bytes:
        return canonical_json({"version": BATCH_FORMAT_VERSION, "proofs": self.proofs})


def make_batch(*, rng: random.Random, proofs: int, invalid: bool = False) -> Batch:
    """A batch of ``proofs`` signed statements; ``invalid`` makes exactly one of them bad."""
    bad_index = rng.randrange(proofs) if invalid else -1
    return Batch(proofs=[make_proof(rng=rng, valid=i != bad_index) for i in range(proofs)])


def parse_batch(raw: bytes) -> Batch:
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BatchFormatError(f"batch is not JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("version") != BATCH_FORMAT_VERSION:
        raise BatchFormatError("batch is not a version-1 batch document")
    proofs = document.get("proofs")
    if not isinstance(proofs, list) or not proofs or not all(isinstance(p, dict) for p in proofs):
        raise BatchFormatError("batch has no list of proofs")
    return Batch(proofs=proofs)


@dataclass(frozen=True)
class BatchCheck:
    root_matches: bool
    invalid_proofs: list[int]

    @property
    def ok(self) -> bool:
        return self.root_matches and not self.invalid_proofs


def check_batch(*, batch: Batch, expected_root: bytes) -> BatchCheck:
    """What an operator checks before signing: the Merkle root, then every proof."""
    if batch.merkle_root != expected_root:
        return BatchCheck(root_matches=False, invalid_proofs=[])
    return BatchCheck(
        root_matches=True,
        invalid_proofs=[i for i, proof in enumerate(batch.proofs) if not proof_is_valid(proof)],
    )
