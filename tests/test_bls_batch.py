"""Batched same-message verification: one pairing check when all are valid, bisection otherwise.

The bisection tests run on pairing_backend("auto") (pyrevm, ~4 ms a check); only two tests use the
py_ecc reference (~0.3 s a check).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from bls import (
    G1_GENERATOR,
    G1_INFINITY,
    G2_GENERATOR,
    G2_INFINITY,
    G2Point,
    KeyPair,
    PairingBackend,
    PyEccBackend,
    SignedItem,
    aggregate_g1,
    aggregate_g2,
    g1_add,
    g1_mul,
    g1_neg,
    g2_neg,
    hash_to_g1,
    keypair_from_seed,
    pairing_backend,
    verify,
    verify_across_messages,
    verify_same_message,
)
from bls.points import G1Point
from tests.test_bls import _twist_point_outside_subgroup

MESSAGE = bytes.fromhex("c0ffee" * 10 + "beef")
NEG_G2 = g2_neg(G2_GENERATOR)


@pytest.fixture(scope="module")
def keys() -> list[KeyPair]:
    return [keypair_from_seed("test-bls-batch", i) for i in range(32)]


@pytest.fixture(scope="module")
def fast() -> PairingBackend:
    return pairing_backend("auto")


def _items(keys: list[KeyPair], *, forged: frozenset[int] = frozenset()) -> list[SignedItem]:
    """Item i signs MESSAGE with key i; the forged ones are off by one generator."""
    items = []
    for i, key in enumerate(keys):
        signature = key.sign(MESSAGE)
        if i in forged:
            signature = g1_add(signature, G1_GENERATOR)
        items.append(SignedItem(key=f"op-{i}", public_key_g2=key.public_key_g2, signature=signature))
    return items


def test_it_accepts_an_all_valid_batch_with_one_pairing_check(
    keys: list[KeyPair], fast: PairingBackend
) -> None:
    result = verify_same_message(message=MESSAGE, items=_items(keys[:16]), backend=fast)
    assert result.valid == [f"op-{i}" for i in range(16)]
    assert result.invalid == []
    assert result.pairing_checks == 1


def test_it_isolates_exactly_the_invalid_items_of_eight(keys: list[KeyPair], fast: PairingBackend) -> None:
    result = verify_same_message(
        message=MESSAGE, items=_items(keys[:8], forged=frozenset({2, 5})), backend=fast
    )
    assert result.invalid == ["op-2", "op-5"]
    assert result.valid == [f"op-{i}" for i in (0, 1, 3, 4, 6, 7)]
    # Top check, then each half fails and is split down to its one bad item: with 2 of 8 bad,
    # bisection is no cheaper than one check per item; it pays off for larger batches (below).
    assert result.pairing_checks == 9


@pytest.mark.parametrize(
    "forged", [frozenset({0, 1}), frozenset({3, 29}), frozenset({15, 16}), frozenset({31})]
)
def test_it_needs_far_fewer_checks_than_items(
    keys: list[KeyPair], fast: PairingBackend, forged: frozenset[int]
) -> None:
    result = verify_same_message(message=MESSAGE, items=_items(keys, forged=forged), backend=fast)
    assert result.invalid == [f"op-{i}" for i in sorted(forged)]
    assert len(result.valid) == 32 - len(forged)
    # Bisection costs at most 2 checks per level per bad item (plus the top one), against 32 one by one.
    assert result.pairing_checks <= 2 * len(forged) * math.log2(32) + 1
    assert result.pairing_checks < 20


def test_it_catches_two_forged_signatures_that_cancel_in_the_plain_sum(
    keys: list[KeyPair], fast: PairingBackend
) -> None:
    items = _items(keys[:6])
    delta = g1_mul(G1_GENERATOR, 123456789)
    a, b = items[1], items[4]
    items[1] = SignedItem(key=a.key, public_key_g2=a.public_key_g2, signature=g1_add(a.signature, delta))
    items[4] = SignedItem(
        key=b.key, public_key_g2=b.public_key_g2, signature=g1_add(b.signature, g1_neg(delta))
    )
    # The unweighted aggregate check is fooled: the sum of signatures is unchanged.
    plain = [
        (aggregate_g1(i.signature for i in items), NEG_G2),
        (hash_to_g1(MESSAGE), aggregate_g2(i.public_key_g2 for i in items)),
    ]
    assert fast.pairing_check(plain)

    result = verify_same_message(message=MESSAGE, items=items, backend=fast)
    assert result.invalid == ["op-1", "op-4"]
    assert result.valid == ["op-0", "op-2", "op-3", "op-5"]


def test_it_finds_every_item_invalid_with_at_most_2n_minus_1_checks(
    keys: list[KeyPair], fast: PairingBackend
) -> None:
    result = verify_same_message(
        message=MESSAGE, items=_items(keys[:8], forged=frozenset(range(8))), backend=fast
    )
    assert result.valid == []
    assert result.invalid == [f"op-{i}" for i in range(8)]
    assert result.pairing_checks == 2 * 8 - 1


@pytest.mark.parametrize("forged", [False, True])
def test_it_checks_a_single_item(keys: list[KeyPair], fast: PairingBackend, forged: bool) -> None:
    result = verify_same_message(
        message=MESSAGE, items=_items(keys[:1], forged=frozenset({0} if forged else set())), backend=fast
    )
    assert (result.valid, result.invalid, result.pairing_checks) == (
        ([], ["op-0"], 1) if forged else (["op-0"], [], 1)
    )


def test_it_rejects_infinity_signatures_and_keys_without_a_pairing(
    keys: list[KeyPair], fast: PairingBackend
) -> None:
    items = [
        SignedItem(key="no-sig", public_key_g2=keys[0].public_key_g2, signature=G1_INFINITY),
        SignedItem(key="no-key", public_key_g2=G2_INFINITY, signature=keys[1].sign(MESSAGE)),
        SignedItem(key="both", public_key_g2=G2_INFINITY, signature=G1_INFINITY),
    ]
    result = verify_same_message(message=MESSAGE, items=items, backend=fast)
    assert (result.valid, result.invalid, result.pairing_checks) == ([], ["no-sig", "no-key", "both"], 0)

    result = verify_same_message(message=MESSAGE, items=[*items[:1], *_items(keys[2:4])], backend=fast)
    assert (result.valid, result.invalid, result.pairing_checks) == (["op-0", "op-1"], ["no-sig"], 1)


def test_it_returns_an_empty_result_for_no_items(fast: PairingBackend) -> None:
    result = verify_same_message(message=MESSAGE, items=[], backend=fast)
    assert (result.valid, result.invalid, result.pairing_checks) == ([], [], 0)


def test_it_rejects_a_message_that_is_not_32_bytes(keys: list[KeyPair], fast: PairingBackend) -> None:
    with pytest.raises(ValueError, match="exactly 32 bytes"):
        verify_same_message(message=b"short", items=_items(keys[:1]), backend=fast)


def test_it_rejects_items_that_are_not_points(keys: list[KeyPair]) -> None:
    with pytest.raises(TypeError, match="signature must be a G1Point"):
        SignedItem(key=1, public_key_g2=keys[0].public_key_g2, signature=(1, 2))  # type: ignore[arg-type]


def test_it_marks_a_key_outside_the_g2_subgroup_invalid(keys: list[KeyPair], fast: PairingBackend) -> None:
    x, y = _twist_point_outside_subgroup()
    items = _items(keys[:4])
    items[2] = SignedItem(key="outside", public_key_g2=G2Point(x, y), signature=items[2].signature)
    result = verify_same_message(message=MESSAGE, items=items, backend=fast)
    assert result.invalid == ["outside"]
    assert result.valid == ["op-0", "op-1", "op-3"]


def test_it_agrees_with_single_verification_on_the_py_ecc_reference(keys: list[KeyPair]) -> None:
    items = _items(keys[:4], forged=frozenset({3}))
    result = verify_same_message(message=MESSAGE, items=items, backend=PyEccBackend())
    assert result.invalid == ["op-3"]
    assert result.valid == ["op-0", "op-1", "op-2"]
    # Top check fails; [0, 1] passes, so [2, 3] fails unchecked; [2] passes, so [3] fails unchecked.
    assert result.pairing_checks == 3
    assert not verify(public_key_g2=items[3].public_key_g2, message=MESSAGE, signature=items[3].signature)


def test_it_uses_the_configured_backend_by_default(keys: list[KeyPair], settings: object) -> None:
    settings.BLS_PAIRING_BACKEND = "py-ecc"  # type: ignore[attr-defined]
    result = verify_same_message(message=MESSAGE, items=_items(keys[:3]))
    assert (result.valid, result.pairing_checks) == (["op-0", "op-1", "op-2"], 1)


# --- several messages in one check -------------------------------------------------------------------


def _message(m: int) -> bytes:
    return m.to_bytes(32, "big")


class CountingBackend:
    """Records the number of pairs of every pairing check it passes on."""

    def __init__(self, inner: PairingBackend):
        self.inner = inner
        self.name = inner.name
        self.pairs: list[int] = []

    def pairing_check(self, pairs: Sequence[tuple[G1Point, G2Point]]) -> bool:
        self.pairs.append(len(pairs))
        return self.inner.pairing_check(pairs)

    def g2_in_subgroup(self, point: G2Point) -> bool:
        return self.inner.g2_in_subgroup(point)


def _by_message(
    keys: list[KeyPair], *, messages: int, forged: frozenset[tuple[int, int]] = frozenset()
) -> dict[bytes, list[SignedItem]]:
    """Every key signs every message; item (m, i) is keyed "m<m>-op<i>"; the forged ones are off by G1."""
    batches: dict[bytes, list[SignedItem]] = {}
    for m in range(messages):
        batch = batches.setdefault(_message(m), [])
        for i, key in enumerate(keys):
            signature = key.sign(_message(m))
            if (m, i) in forged:
                signature = g1_add(signature, G1_GENERATOR)
            batch.append(SignedItem(key=f"m{m}-op{i}", public_key_g2=key.public_key_g2, signature=signature))
    return batches


def test_it_accepts_many_all_valid_messages_with_one_pairing_check(
    keys: list[KeyPair], fast: PairingBackend
) -> None:
    counting = CountingBackend(fast)
    result = verify_across_messages(items_by_message=_by_message(keys[:4], messages=6), backend=counting)
    assert result.valid == [f"m{m}-op{i}" for m in range(6) for i in range(4)]
    assert (result.invalid, result.pairing_checks) == ([], 1)
    # Four keys over six messages: grouped by key, one pair per key plus the signatures' pair.
    assert counting.pairs == [4 + 1]


def test_it_groups_by_message_when_one_message_has_many_signers(
    keys: list[KeyPair], fast: PairingBackend
) -> None:
    counting = CountingBackend(fast)
    result = verify_across_messages(items_by_message=_by_message(keys[:20], messages=1), backend=counting)
    assert (len(result.valid), result.invalid, result.pairing_checks) == (20, [], 1)
    # One pair for the message (its keys summed in G2) and one for the signatures, not one per key.
    assert counting.pairs == [1 + 1]


def test_it_groups_by_key_when_a_few_messages_share_their_signers(
    keys: list[KeyPair], fast: PairingBackend
) -> None:
    """Two batches of 20 operators: by message, 3 pairs and a G2 sum of 40 keys (each costing about a pair);
    by key, 21 pairs and G1 sums."""
    counting = CountingBackend(fast)
    result = verify_across_messages(items_by_message=_by_message(keys[:20], messages=2), backend=counting)
    assert (len(result.valid), result.invalid, result.pairing_checks) == (40, [], 1)
    assert counting.pairs == [20 + 1]


def test_it_isolates_one_forgery_among_several_messages(keys: list[KeyPair], fast: PairingBackend) -> None:
    result = verify_across_messages(
        items_by_message=_by_message(keys[:4], messages=8, forged=frozenset({(5, 2)})), backend=fast
    )
    assert result.invalid == ["m5-op2"]
    assert len(result.valid) == 31
    # Groups are halved first (4 keys: 2 levels), then the one key's 8 items (3 levels): 2 checks a level.
    assert result.pairing_checks <= 2 * (2 + 3) + 1


def test_it_catches_two_forgeries_of_different_messages_that_cancel_in_the_plain_sum(
    keys: list[KeyPair], fast: PairingBackend
) -> None:
    batches = _by_message(keys[:3], messages=3)
    delta = g1_mul(G1_GENERATOR, 987654321)
    a, b = batches[_message(0)][1], batches[_message(2)][1]
    batches[_message(0)][1] = SignedItem(
        key=a.key, public_key_g2=a.public_key_g2, signature=g1_add(a.signature, delta)
    )
    batches[_message(2)][1] = SignedItem(
        key=b.key, public_key_g2=b.public_key_g2, signature=g1_add(b.signature, g1_neg(delta))
    )
    everything = [item for items in batches.values() for item in items]
    plain = [(aggregate_g1(i.signature for i in everything), NEG_G2)] + [
        (hash_to_g1(message), aggregate_g2(i.public_key_g2 for i in items))
        for message, items in batches.items()
    ]
    assert fast.pairing_check(plain), "the unweighted check is fooled"

    result = verify_across_messages(items_by_message=batches, backend=fast)
    assert result.invalid == ["m0-op1", "m2-op1"]
    assert len(result.valid) == 7


def test_it_rejects_keys_repeated_across_messages(keys: list[KeyPair], fast: PairingBackend) -> None:
    item = _items(keys[:1])[0]
    with pytest.raises(ValueError, match="distinct"):
        verify_across_messages(items_by_message={_message(0): [item], _message(1): [item]}, backend=fast)


def test_it_agrees_with_single_verification_across_messages_on_the_py_ecc_reference(
    keys: list[KeyPair],
) -> None:
    counting = CountingBackend(PyEccBackend())
    batches = _by_message(keys[:2], messages=3, forged=frozenset({(1, 0)}))
    result = verify_across_messages(items_by_message=batches, backend=counting)
    assert result.invalid == ["m1-op0"]
    assert result.valid == ["m0-op0", "m0-op1", "m1-op1", "m2-op0", "m2-op1"]
    # Top (a pair per key plus one) fails; key 0's half fails; within it [m0] passes, so [m1, m2]
    # fails unchecked; [m1] fails, [m2] passes; then key 1's half is checked and passes.
    assert counting.pairs == [3, 2, 2, 2, 2, 2]
    assert result.pairing_checks == 6
    forged = batches[_message(1)][0]
    assert not verify(public_key_g2=forged.public_key_g2, message=_message(1), signature=forged.signature)


def test_it_sums_g1_points_on_integers_as_py_ecc_does() -> None:
    from py_ecc.optimized_bn128 import Z1

    from bls.batch import _g1_msm, _msm
    from bls.points import _g1_from_jacobian, _g1_to_jacobian

    points = [hash_to_g1(_message(m)) for m in range(40)]
    # Repeats land in one bucket (an addition of equal points), and P + (-P) cancels.
    points += [points[0], points[1], g1_neg(points[2])]
    weights = [(m * 0x9E3779B97F4A7C15 + 1) % 2**64 for m in range(len(points))]
    weights[-1] = weights[2]
    expected = _g1_from_jacobian(_msm([_g1_to_jacobian(p) for p in points], weights, Z1))
    assert _g1_msm(points, weights) == expected
    assert _g1_msm([G1_GENERATOR, g1_neg(G1_GENERATOR)], [7, 7]) == G1_INFINITY
