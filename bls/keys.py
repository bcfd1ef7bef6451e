"""BLS key pairs: a secret in Fr with its G1 and G2 public keys, as eigensdk-go's bls.KeyPair."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from eth_utils import keccak

from .points import CURVE_ORDER, G1_GENERATOR, G2_GENERATOR, G1Point, G2Point, g1_mul, g2_mul
from .scheme import _check_secret, operator_id, sign

# Domain prefix for devnet keys, so seeds shared with other tools never yield the same secrets.
_SEED_DOMAIN = b"avs-controlplane/bls/"


@dataclass(frozen=True)
class KeyPair:
    """Build with keypair_from_secret/_from_seed or generate_keypair, which derive both public
    keys; the constructor itself does not recompute them (a G2 multiplication costs ~15 ms)."""

    # repr=False keeps the secret out of logs, tracebacks and debug pages.
    secret: int = field(repr=False)
    public_key_g1: G1Point
    public_key_g2: G2Point

    @property
    def operator_id(self) -> bytes:
        return operator_id(self.public_key_g1)

    def sign(self, message: bytes) -> G1Point:
        return sign(secret=self.secret, message=message)


def keypair_from_secret(secret: int) -> KeyPair:
    """Key pair for 1 <= secret < r (ValueError otherwise)."""
    secret = _check_secret(secret)
    return KeyPair(
        secret=secret,
        public_key_g1=g1_mul(G1_GENERATOR, secret),
        public_key_g2=g2_mul(G2_GENERATOR, secret),
    )


def keypair_from_seed(seed: str | bytes, index: int) -> KeyPair:
    """Deterministic devnet key: keccak256(b"avs-controlplane/bls/" + seed + b"/" + str(index)) mod r.

    A zero result (probability ~2**-254) is skipped by re-hashing the digest until it is not zero,
    which keeps the derivation a pure function of (seed, index). Never use for real operators.
    """
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError("index must be a non-negative int")
    if isinstance(seed, str):
        seed_bytes = seed.encode("utf-8")
    elif isinstance(seed, bytes | bytearray):
        seed_bytes = bytes(seed)
    else:
        raise ValueError(f"seed must be str or bytes, got {type(seed).__name__}")
    digest = keccak(_SEED_DOMAIN + seed_bytes + b"/" + str(index).encode("ascii"))
    secret = int.from_bytes(digest, "big") % CURVE_ORDER
    while secret == 0:
        digest = keccak(digest)
        secret = int.from_bytes(digest, "big") % CURVE_ORDER
    return keypair_from_secret(secret)


def generate_keypair() -> KeyPair:
    """Fresh random key pair from the OS CSPRNG."""
    return keypair_from_secret(secrets.randbelow(CURVE_ORDER - 1) + 1)
