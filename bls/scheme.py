"""BLS signatures on BN254 exactly as eigenlayer-middleware (BN254.sol) and eigensdk-go do them.

Signatures live in G1 (``sig = sk * H(m)``), public keys in G2 (plus a G1 copy that identifies the
operator). Every check is written as a product of pairings that must equal one, computed with one
Miller loop per pair and a single shared final exponentiation: that is what precompile 0x08
computes, and the final exponentiation is the most expensive part in py_ecc.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from eth_utils import keccak
from py_ecc.fields import optimized_bn128_FQ12 as FQ12
from py_ecc.optimized_bn128 import Z1, Z2, add, twist
from py_ecc.optimized_bn128.optimized_pairing import (
    cast_point_to_fq12,
    final_exponentiate,
    miller_loop,
)

from .points import (
    CURVE_ORDER,
    FIELD_MODULUS,
    G1_GENERATOR,
    G2_GENERATOR,
    G1Point,
    G2Point,
    _g1_from_jacobian,
    _g1_to_jacobian,
    _g2_from_jacobian,
    _g2_to_jacobian,
    g1_add,
    g1_mul,
    g2_neg,
)

# (p + 1) / 4: p = 3 mod 4, so beta^((p+1)/4) is a square root of beta whenever one exists.
# Same constant as BN254.findYFromX (0xc19139cb...f3f52).
_SQRT_EXPONENT = (FIELD_MODULUS + 1) // 4

# BN254.negGeneratorG2(): verification is written as e(sig, -G2) * e(H(m), pk) == 1.
_NEG_G2_GENERATOR = g2_neg(G2_GENERATOR)


def _check_message(message: object) -> bytes:
    if not isinstance(message, bytes | bytearray):
        raise ValueError(f"message must be bytes, got {type(message).__name__}")
    if len(message) != 32:
        raise ValueError(f"message must be exactly 32 bytes, got {len(message)}")
    return bytes(message)


def _check_secret(secret: object) -> int:
    if not isinstance(secret, int) or isinstance(secret, bool):
        raise ValueError(f"secret must be an int, got {type(secret).__name__}")
    if not 1 <= secret < CURVE_ORDER:
        raise ValueError("secret must satisfy 1 <= secret < CURVE_ORDER")
    return secret


def hash_to_g1(message: bytes) -> G1Point:
    """BN254.hashToG1 / eigensdk-go MapToCurve: try-and-increment on the 32-byte message itself.

    Not a constant-time or indifferentiable hash; it is what the contracts check against, so any
    change here (another root choice, a domain separator) would make every signature invalid on chain.
    """
    x = int.from_bytes(_check_message(message), "big") % FIELD_MODULUS
    while True:
        beta = (pow(x, 3, FIELD_MODULUS) + 3) % FIELD_MODULUS
        y = pow(beta, _SQRT_EXPONENT, FIELD_MODULUS)
        if y * y % FIELD_MODULUS == beta:
            # y is whichever root the exponentiation yields; no sign normalisation, as on chain.
            return G1Point(x, y)
        x = (x + 1) % FIELD_MODULUS


def sign(*, secret: int, message: bytes) -> G1Point:
    return g1_mul(hash_to_g1(message), _check_secret(secret))


def pairing_check(pairs: Sequence[tuple[G1Point, G2Point]]) -> bool:
    """prod e(P_i, Q_i) == 1, as precompile 0x08 decides it (an empty product is 1).

    Pairs with a point at infinity contribute 1 and are skipped, again as the precompile does.
    G2 inputs are trusted to be in the subgroup: G2Point.from_evm/from_hex enforce that at the
    boundary.
    """
    accumulated = FQ12.one()
    for p, q in pairs:
        if p.is_infinity() or q.is_infinity():
            continue
        accumulated = accumulated * miller_loop(
            twist(_g2_to_jacobian(q)),
            cast_point_to_fq12(_g1_to_jacobian(p)),
            final_exponentiate=False,
        )
    return final_exponentiate(accumulated) == FQ12.one()


def verify(*, public_key_g2: G2Point, message: bytes, signature: G1Point) -> bool:
    """e(sig, G2) == e(H(m), pkG2), checked as e(sig, -G2) * e(H(m), pkG2) == 1.

    Infinity is rejected outright: the identity key "signs" everything with the identity
    signature, so accepting it would let anyone fake a vote.
    """
    message_point = hash_to_g1(message)
    if signature.is_infinity() or public_key_g2.is_infinity():
        return False
    return pairing_check([(signature, _NEG_G2_GENERATOR), (message_point, public_key_g2)])


def verify_with_g1_binding(
    *,
    public_key_g1: G1Point,
    public_key_g2: G2Point,
    message_point: G1Point,
    signature: G1Point,
    gamma: int,
) -> bool:
    """BLSSignatureChecker / BLSApkRegistry check: e(sig + g*pkG1, -G2) * e(H + g*G1, pkG2) == 1.

    With gamma derived from all inputs (the contracts hash them with keccak256 and reduce mod r),
    this proves both that sig is valid for pkG2 and that pkG1 and pkG2 share the same secret, in
    one two-pair pairing. ``message_point`` is already on the curve (hash_to_g1 of the message).
    """
    if public_key_g1.is_infinity() or public_key_g2.is_infinity() or signature.is_infinity():
        return False
    gamma %= CURVE_ORDER
    left = g1_add(signature, g1_mul(public_key_g1, gamma))
    right = g1_add(message_point, g1_mul(G1_GENERATOR, gamma))
    return pairing_check([(left, _NEG_G2_GENERATOR), (right, public_key_g2)])


def aggregate_g1(points: Iterable[G1Point]) -> G1Point:
    """Sum of G1 points (signatures or G1 keys); the empty sum is infinity."""
    total = Z1
    for point in points:
        total = add(total, _g1_to_jacobian(point))
    return _g1_from_jacobian(total)


def aggregate_g2(points: Iterable[G2Point]) -> G2Point:
    """Sum of G2 public keys. Same-message aggregation is sound only because registration
    demands proof of possession (verify_with_g1_binding), which rules out rogue-key attacks."""
    total = Z2
    for point in points:
        total = add(total, _g2_to_jacobian(point))
    return _g2_from_jacobian(total)


def operator_id(public_key_g1: G1Point) -> bytes:
    """BN254.hashG1Point: keccak256(abi.encodePacked(uint256 X, uint256 Y)), the operatorId."""
    return keccak(public_key_g1.x.to_bytes(32, "big") + public_key_g1.y.to_bytes(32, "big"))
