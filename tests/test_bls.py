"""BN254 BLS core: hashing, signing, aggregation, the gamma trick, encodings and strict parsing.

py_ecc pairings cost ~0.3 s each here, so every test that pairs does so a handful of times at most.
"""

from __future__ import annotations

import pytest
from eth_utils import keccak
from py_ecc.fields import optimized_bn128_FQ2 as FQ2
from py_ecc.optimized_bn128 import G2 as PY_ECC_G2
from py_ecc.optimized_bn128 import b2, is_inf, is_on_curve, multiply, normalize

from bls import (
    CURVE_ORDER,
    FIELD_MODULUS,
    G1_GENERATOR,
    G2_GENERATOR,
    G1Point,
    G2Point,
    InvalidPoint,
    KeyPair,
    aggregate_g1,
    aggregate_g2,
    g1_add,
    g1_mul,
    g1_neg,
    generate_keypair,
    hash_to_g1,
    keypair_from_secret,
    keypair_from_seed,
    operator_id,
    pairing_check,
    sign,
    verify,
    verify_with_g1_binding,
)

P = FIELD_MODULUS
G2_X_REAL = 10857046999023057135944570762232829481370756359578518086990519993285655852781
G2_X_IMAG = 11559732032986387107991004021392285783925812861821192530917403151452391805634
G2_Y_REAL = 8495653923123431417604973247489272438418190587263600148770280649306958101930
G2_Y_IMAG = 4082367875863433681332203403145435568316851327593401208105741076214120093531

MESSAGE = keccak(b"batch merkle root")
OTHER_MESSAGE = keccak(b"another batch merkle root")


@pytest.fixture(scope="module")
def alice() -> KeyPair:
    return keypair_from_secret(0x1234567890ABCDEF)


@pytest.fixture(scope="module")
def signers() -> list[KeyPair]:
    return [keypair_from_seed("test", i) for i in range(3)]


# --- independent reference arithmetic (plain ints, no code shared with bls) ----------


def _is_square(value: int) -> bool:
    # Euler's criterion; 0 counts as a square.
    return value % P == 0 or pow(value, (P - 1) // 2, P) == 1


def _reference_hash_to_g1(message: bytes) -> tuple[int, int, int]:
    """(x, y, number of increments), deciding squareness by Euler's criterion instead of y*y == beta."""
    x = int.from_bytes(message, "big") % P
    steps = 0
    while not _is_square(x**3 + 3):
        x = (x + 1) % P
        steps += 1
    return x, pow(x**3 + 3, (P + 1) // 4, P), steps


def _sqrt_fp(value: int) -> int:
    root = pow(value, (P + 1) // 4, P)
    assert root * root % P == value % P
    return root


def _sqrt_fp2(a0: int, a1: int) -> tuple[int, int] | None:
    """Square root in FQ2 = Fp[i]/(i^2 + 1) via the norm, or None for a non-square."""
    if a1 == 0:
        return (_sqrt_fp(a0), 0) if _is_square(a0) else (0, _sqrt_fp(-a0 % P))
    norm = (a0 * a0 + a1 * a1) % P
    if not _is_square(norm):
        return None
    s = _sqrt_fp(norm)
    half = pow(2, -1, P)
    t = (a0 + s) * half % P
    if not _is_square(t):
        t = (a0 - s) * half % P
    x0 = _sqrt_fp(t)
    x1 = a1 * pow(2 * x0, -1, P) % P
    assert ((x0 * x0 - x1 * x1) % P, 2 * x0 * x1 % P) == (a0 % P, a1 % P)
    return x0, x1


def _twist_point_outside_subgroup() -> tuple[tuple[int, int], tuple[int, int]]:
    """An affine point on y^2 = x^3 + 3/(9+i) whose order is not r (the twist's cofactor is 2p - r)."""
    b_real, b_imag = (int(c) for c in b2.coeffs)
    for k in range(1, 100):
        x = FQ2([k, 1])
        rhs = x * x * x
        root = _sqrt_fp2((int(rhs.coeffs[0]) + b_real) % P, (int(rhs.coeffs[1]) + b_imag) % P)
        if root is None:
            continue
        point = (x, FQ2(list(root)), FQ2.one())
        assert is_on_curve(point, b2)
        if not is_inf(multiply(point, CURVE_ORDER)):
            return (k, 1), root
    raise AssertionError("no on-twist point outside the subgroup found")


# --- hash to curve ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        bytes(32),
        b"\xff" * 32,  # above p: reduced mod p first, as BN254.hashToG1 does
        MESSAGE,
        (5).to_bytes(32, "big"),
    ],
)
def test_it_hashes_to_the_curve_like_bn254_hash_to_g1(message: bytes) -> None:
    point = hash_to_g1(message)
    x, y, _ = _reference_hash_to_g1(message)
    assert (point.x, point.y) == (x, y)
    assert (y * y - x**3 - 3) % P == 0
    assert hash_to_g1(message) == point


def test_it_increments_x_until_a_root_exists() -> None:
    # Find a message whose first candidate x has no root, so the try-and-increment loop is exercised.
    message = next(m for m in (i.to_bytes(32, "big") for i in range(100)) if _reference_hash_to_g1(m)[2] > 0)
    x, _, steps = _reference_hash_to_g1(message)
    assert hash_to_g1(message).x == x == int.from_bytes(message, "big") + steps


@pytest.mark.parametrize("message", [b"", bytes(31), bytes(33), "00" * 32])
def test_it_rejects_messages_that_are_not_32_bytes(message: object) -> None:
    with pytest.raises(ValueError, match="message must be"):
        hash_to_g1(message)  # type: ignore[arg-type]


# --- sign / verify ----------------------------------------------------------------------------------


def test_it_verifies_a_signature_and_rejects_wrong_message_key_and_tampering(alice: KeyPair) -> None:
    signature = alice.sign(MESSAGE)
    assert signature == sign(secret=alice.secret, message=MESSAGE)
    assert signature == g1_mul(hash_to_g1(MESSAGE), alice.secret)
    assert verify(public_key_g2=alice.public_key_g2, message=MESSAGE, signature=signature)

    assert not verify(public_key_g2=alice.public_key_g2, message=OTHER_MESSAGE, signature=signature)
    bob = keypair_from_secret(alice.secret + 1)
    assert not verify(public_key_g2=bob.public_key_g2, message=MESSAGE, signature=signature)
    tampered = g1_add(signature, G1_GENERATOR)
    assert not verify(public_key_g2=alice.public_key_g2, message=MESSAGE, signature=tampered)


def test_it_rejects_infinity_signatures_and_keys(alice: KeyPair) -> None:
    infinity_g1 = G1Point(0, 0)
    infinity_g2 = G2Point((0, 0), (0, 0))
    assert not verify(public_key_g2=alice.public_key_g2, message=MESSAGE, signature=infinity_g1)
    assert not verify(public_key_g2=infinity_g2, message=MESSAGE, signature=infinity_g1)


def test_it_refuses_to_sign_with_an_out_of_range_secret() -> None:
    for secret in (0, CURVE_ORDER, -1):
        with pytest.raises(ValueError, match="secret"):
            sign(secret=secret, message=MESSAGE)
        with pytest.raises(ValueError, match="secret"):
            keypair_from_secret(secret)


def test_it_treats_an_empty_pairing_product_as_one() -> None:
    assert pairing_check([])
    assert pairing_check([(G1Point(0, 0), G2_GENERATOR)])


# --- aggregation ------------------------------------------------------------------------------------


def test_it_verifies_an_aggregate_and_fails_when_a_signature_is_missing(signers: list[KeyPair]) -> None:
    signatures = [signer.sign(MESSAGE) for signer in signers]
    apk_g2 = aggregate_g2(signer.public_key_g2 for signer in signers)
    assert verify(public_key_g2=apk_g2, message=MESSAGE, signature=aggregate_g1(signatures))
    assert not verify(public_key_g2=apk_g2, message=MESSAGE, signature=aggregate_g1(signatures[:2]))


def test_it_aggregates_consistently_with_the_group_law(signers: list[KeyPair]) -> None:
    keys = [signer.public_key_g1 for signer in signers]
    assert aggregate_g1(keys) == g1_add(g1_add(keys[0], keys[1]), keys[2])
    assert aggregate_g1([keys[0], g1_neg(keys[0])]).is_infinity()
    assert aggregate_g1([]).is_infinity()
    assert aggregate_g2([]).is_infinity()
    total_secret = sum(signer.secret for signer in signers)
    assert (
        aggregate_g2(signer.public_key_g2 for signer in signers)
        == keypair_from_secret(total_secret % CURVE_ORDER).public_key_g2
    )


# --- the gamma trick (BLSSignatureChecker / BLSApkRegistry) ------------------------------------------


def _checker_gamma(message: bytes, pk_g1: G1Point, pk_g2: G2Point, signature: G1Point) -> int:
    # BLSSignatureChecker: keccak256(abi.encodePacked(msgHash, apk.X, apk.Y, apkG2.X[0], apkG2.X[1],
    # apkG2.Y[0], apkG2.Y[1], sigma.X, sigma.Y)) % FR_MODULUS
    (x_imag, x_real), (y_imag, y_real) = pk_g2.to_evm()
    words = [*pk_g1.to_evm(), x_imag, x_real, y_imag, y_real, *signature.to_evm()]
    digest = keccak(message + b"".join(w.to_bytes(32, "big") for w in words))
    return int.from_bytes(digest, "big") % CURVE_ORDER


def test_it_binds_the_g1_key_to_the_g2_key(alice: KeyPair) -> None:
    signature = alice.sign(MESSAGE)
    gamma = _checker_gamma(MESSAGE, alice.public_key_g1, alice.public_key_g2, signature)
    assert verify_with_g1_binding(
        public_key_g1=alice.public_key_g1,
        public_key_g2=alice.public_key_g2,
        message_point=hash_to_g1(MESSAGE),
        signature=signature,
        gamma=gamma,
    )

    other_g1 = keypair_from_secret(alice.secret + 1).public_key_g1
    gamma = _checker_gamma(MESSAGE, other_g1, alice.public_key_g2, signature)
    assert not verify_with_g1_binding(
        public_key_g1=other_g1,
        public_key_g2=alice.public_key_g2,
        message_point=hash_to_g1(MESSAGE),
        signature=signature,
        gamma=gamma,
    )


# --- encodings --------------------------------------------------------------------------------------


def test_it_matches_py_ecc_and_bn254_sol_generators() -> None:
    assert G1_GENERATOR.to_evm() == (1, 2)
    x, y = normalize(PY_ECC_G2)
    assert G2_GENERATOR.x == tuple(int(c) for c in x.coeffs) == (G2_X_REAL, G2_X_IMAG)
    assert G2_GENERATOR.y == tuple(int(c) for c in y.coeffs) == (G2_Y_REAL, G2_Y_IMAG)


def test_it_puts_the_imaginary_part_first_in_evm_order() -> None:
    assert G2_GENERATOR.to_evm() == ((G2_X_IMAG, G2_X_REAL), (G2_Y_IMAG, G2_Y_REAL))
    assert G2Point.from_evm([G2_X_IMAG, G2_X_REAL], [G2_Y_IMAG, G2_Y_REAL]) == G2_GENERATOR
    assert G2_GENERATOR.to_hex() == {
        "X": [f"0x{G2_X_IMAG:064x}", f"0x{G2_X_REAL:064x}"],
        "Y": [f"0x{G2_Y_IMAG:064x}", f"0x{G2_Y_REAL:064x}"],
    }


def test_it_round_trips_evm_and_hex_encodings(alice: KeyPair) -> None:
    g1, g2 = alice.public_key_g1, alice.public_key_g2
    assert G1Point.from_evm(*g1.to_evm()) == g1
    assert G1Point.from_hex(g1.to_hex()) == g1
    assert G2Point.from_evm(*g2.to_evm()) == g2
    assert G2Point.from_hex(g2.to_hex()) == g2
    assert g1.to_hex()["X"] == f"0x{g1.x:064x}"
    assert G1Point.from_hex({"X": "0x1", "Y": "0x02"}) == G1_GENERATOR  # short hex is fine
    assert G1Point.from_evm(0, 0).is_infinity()
    assert G2Point.from_evm([0, 0], [0, 0]).is_infinity()


# --- strict parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "y", "error"),
    [
        (1, 3, "not on curve"),
        (P, 2, "X coordinate out of range"),
        (1, P + 2, "Y coordinate out of range"),
        (-1, 2, "X coordinate out of range"),
        (0, 1, "not on curve"),
        (True, 2, "must be an int"),
    ],
)
def test_it_rejects_invalid_g1_coordinates(x: int, y: int, error: str) -> None:
    with pytest.raises(InvalidPoint, match=error):
        G1Point.from_evm(x, y)


def test_it_rejects_a_g2_point_off_the_twist() -> None:
    with pytest.raises(InvalidPoint, match="not on the twist curve"):
        G2Point.from_evm([G2_X_IMAG, G2_X_REAL], [G2_Y_IMAG, G2_Y_REAL + 1])
    with pytest.raises(InvalidPoint, match="X real coordinate out of range"):
        G2Point.from_evm([G2_X_IMAG, G2_X_REAL + P], [G2_Y_IMAG, G2_Y_REAL])
    with pytest.raises(InvalidPoint, match=r"pair \[imag, real\]"):
        G2Point.from_evm([G2_X_IMAG], [G2_Y_IMAG, G2_Y_REAL])


def test_it_rejects_a_twist_point_outside_the_g2_subgroup() -> None:
    (x_real, x_imag), (y_real, y_imag) = _twist_point_outside_subgroup()
    G2Point((x_real, x_imag), (y_real, y_imag))  # on the twist, so the bare constructor accepts it
    with pytest.raises(InvalidPoint, match="not in G2 subgroup"):
        G2Point.from_evm([x_imag, x_real], [y_imag, y_real])
    untrusted = {"X": [hex(x_imag), hex(x_real)], "Y": [hex(y_imag), hex(y_real)]}
    with pytest.raises(InvalidPoint, match="not in G2 subgroup"):
        G2Point.from_hex(untrusted)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (["0x1", "0x2"], "must be an object"),
        ("0x1", "must be an object"),
        ({"X": "0x1"}, "missing key"),
        ({"x": "0x1", "y": "0x2"}, "missing key"),
        ({"X": "0x1", "Y": "0x2", "Z": "0x1"}, "unexpected key"),
        ({"X": "0x1", "Y": 2}, "Y must be a hex string"),
        ({"X": "1", "Y": "0x2"}, "not a 0x-prefixed hex string"),
        ({"X": "0xg1", "Y": "0x2"}, "not a 0x-prefixed hex string"),
        ({"X": "0x", "Y": "0x2"}, "not a 0x-prefixed hex string"),
        ({"X": " 0x1", "Y": "0x2"}, "not a 0x-prefixed hex string"),
        ({"X": "0x1_0", "Y": "0x2"}, "not a 0x-prefixed hex string"),
        ({"X": "0x1\n", "Y": "0x2"}, "not a 0x-prefixed hex string"),
        ({"X": "0x" + "0" * 64 + "1", "Y": "0x2"}, "longer than 32 bytes"),
        ({"X": "0x" + "f" * 64, "Y": "0x2"}, "X coordinate out of range"),
        ({"X": "0x1", "Y": "0x3"}, "not on curve"),
    ],
)
def test_it_rejects_malformed_g1_hex(value: object, error: str) -> None:
    with pytest.raises(InvalidPoint, match=error):
        G1Point.from_hex(value)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"X": "0x1", "Y": "0x2"}, "X must be a list"),
        ({"X": ["0x1"], "Y": ["0x1", "0x2"]}, "X must be a list"),
        ({"X": [f"0x{G2_X_IMAG:x}", f"0x{G2_X_REAL:x}"]}, "missing key"),
        ({"X": [f"0x{G2_X_IMAG:x}", "0xzz"], "Y": ["0x1", "0x2"]}, "X real is not a 0x-prefixed"),
        ({"X": ["0x" + "1" * 65, "0x1"], "Y": ["0x1", "0x2"]}, "X imag is longer than 32 bytes"),
    ],
)
def test_it_rejects_malformed_g2_hex(value: object, error: str) -> None:
    with pytest.raises(InvalidPoint, match=error):
        G2Point.from_hex(value)


# --- keys and operator ids --------------------------------------------------------------------------


def test_it_derives_the_operator_id_from_the_packed_g1_key(alice: KeyPair) -> None:
    pk = alice.public_key_g1
    expected = keccak(pk.x.to_bytes(32, "big") + pk.y.to_bytes(32, "big"))
    assert operator_id(pk) == alice.operator_id == expected
    assert len(expected) == 32
    # abi.encodePacked(uint256(1), uint256(2)) for the generator
    assert operator_id(G1_GENERATOR) == keccak(bytes.fromhex("00" * 31 + "01" + "00" * 31 + "02"))


def test_it_derives_devnet_keys_deterministically_from_a_seed() -> None:
    first = keypair_from_seed("devnet", 0)
    assert first == keypair_from_seed(b"devnet", 0)
    assert first.secret != keypair_from_seed("devnet", 1).secret
    assert first.secret != keypair_from_seed("other", 0).secret
    digest = keccak(b"avs-controlplane/bls/devnet/0")
    assert first.secret == int.from_bytes(digest, "big") % CURVE_ORDER
    assert first.public_key_g1 == g1_mul(G1_GENERATOR, first.secret)
    with pytest.raises(ValueError, match="index"):
        keypair_from_seed("devnet", -1)


def test_it_generates_random_keys_whose_public_keys_match_the_secret() -> None:
    pair = generate_keypair()
    assert 1 <= pair.secret < CURVE_ORDER
    assert pair.public_key_g1 == g1_mul(G1_GENERATOR, pair.secret)
    assert pair != generate_keypair()
    assert str(pair.secret) not in repr(pair)
