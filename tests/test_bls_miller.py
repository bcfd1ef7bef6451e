"""Miller loops on cached lines and the final exponentiation: exactly py_ecc's elements, so the reference's answers."""

from __future__ import annotations

import pytest
from py_ecc.fields import optimized_bn128_FQ12 as FQ12
from py_ecc.optimized_bn128 import twist
from py_ecc.optimized_bn128.optimized_pairing import cast_point_to_fq12, final_exponentiate, miller_loop

from bls import (
    G1_GENERATOR,
    G1_INFINITY,
    G2_GENERATOR,
    G2_INFINITY,
    KeyPair,
    g1_add,
    g2_neg,
    hash_to_g1,
    keypair_from_seed,
    pairing_check,
)
from bls.miller import final_exponentiation, multi_miller_loop
from bls.miller import pairing_check as lined_pairing_check
from bls.points import _g1_to_jacobian, _g2_to_jacobian

MESSAGE = bytes.fromhex("ab" * 32)


@pytest.fixture(scope="module")
def keys() -> list[KeyPair]:
    return [keypair_from_seed("test-bls-miller", i) for i in range(3)]


def test_it_computes_exactly_the_product_of_py_ecc_miller_loops(keys: list[KeyPair]) -> None:
    pairs = [(hash_to_g1(bytes([i]) * 32), key.public_key_g2) for i, key in enumerate(keys)] + [
        (keys[0].sign(MESSAGE), g2_neg(G2_GENERATOR)),
        (G1_INFINITY, keys[1].public_key_g2),
    ]
    expected = FQ12.one()
    for p, q in pairs[:4]:
        expected = expected * miller_loop(
            twist(_g2_to_jacobian(q)), cast_point_to_fq12(_g1_to_jacobian(p)), final_exponentiate=False
        )
    assert multi_miller_loop(pairs) == expected


def test_it_agrees_with_the_reference_pairing_check(keys: list[KeyPair]) -> None:
    signature = keys[2].sign(MESSAGE)
    valid = [(signature, g2_neg(G2_GENERATOR)), (hash_to_g1(MESSAGE), keys[2].public_key_g2)]
    forged = [(g1_add(signature, G1_GENERATOR), g2_neg(G2_GENERATOR)), valid[1]]
    assert lined_pairing_check(valid) is pairing_check(valid) is True
    assert lined_pairing_check(forged) is pairing_check(forged) is False
    assert lined_pairing_check([]) is lined_pairing_check([(G1_GENERATOR, G2_INFINITY)]) is True


def test_it_computes_exactly_py_eccs_final_exponentiation(keys: list[KeyPair]) -> None:
    f = multi_miller_loop(
        [(hash_to_g1(MESSAGE), keys[0].public_key_g2), (G1_GENERATOR, keys[1].public_key_g2)]
    )
    assert final_exponentiation(f) == final_exponentiate(f)
    assert final_exponentiation(FQ12.one()) == FQ12.one()
