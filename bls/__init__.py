"""BN254 BLS signatures compatible with EigenLayer (eigenlayer-middleware BN254.sol, eigensdk-go bls).

Points are affine integer dataclasses; G2 coordinates are (real, imag) in Python and
[imag, real] on the EVM side (to_evm/from_evm/to_hex/from_hex do the swap). Untrusted data must
enter through from_evm/from_hex, which also check the G2 subgroup.
"""

from __future__ import annotations

from .backends import (
    PairingBackend,
    PairingBackendError,
    PyEccBackend,
    PyrevmBackend,
    available_backends,
    pairing_backend,
)
from .batch import BatchVerifyResult, SignedItem, verify_across_messages, verify_same_message
from .keys import KeyPair, generate_keypair, keypair_from_secret, keypair_from_seed
from .points import (
    CURVE_ORDER,
    FIELD_MODULUS,
    G1_GENERATOR,
    G1_INFINITY,
    G2_GENERATOR,
    G2_INFINITY,
    G1Point,
    G2Point,
    InvalidPoint,
    g1_add,
    g1_mul,
    g1_neg,
    g2_add,
    g2_mul,
    g2_neg,
)
from .scheme import (
    aggregate_g1,
    aggregate_g2,
    hash_to_g1,
    operator_id,
    pairing_check,
    sign,
    verify,
    verify_with_g1_binding,
)

__all__ = [
    "CURVE_ORDER",
    "FIELD_MODULUS",
    "G1_GENERATOR",
    "G1_INFINITY",
    "G2_GENERATOR",
    "G2_INFINITY",
    "BatchVerifyResult",
    "G1Point",
    "G2Point",
    "InvalidPoint",
    "KeyPair",
    "PairingBackend",
    "PairingBackendError",
    "PyEccBackend",
    "PyrevmBackend",
    "SignedItem",
    "aggregate_g1",
    "aggregate_g2",
    "available_backends",
    "g1_add",
    "g1_mul",
    "g1_neg",
    "g2_add",
    "g2_mul",
    "g2_neg",
    "generate_keypair",
    "hash_to_g1",
    "keypair_from_secret",
    "keypair_from_seed",
    "operator_id",
    "pairing_backend",
    "pairing_check",
    "sign",
    "verify",
    "verify_across_messages",
    "verify_same_message",
    "verify_with_g1_binding",
]
