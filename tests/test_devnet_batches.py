from __future__ import annotations

import random

import pytest

from devnet.batches import BatchFormatError, check_batch, make_batch, merkle_root, parse_batch, proof_leaf


def test_it_accepts_a_batch_whose_root_and_proofs_hold():
    batch = make_batch(rng=random.Random(1), proofs=5)
    check = check_batch(batch=parse_batch(batch.to_json()), expected_root=batch.merkle_root)
    assert check.ok
    assert check.root_matches
    assert check.invalid_proofs == []


def test_it_finds_the_one_bad_proof_in_an_invalid_batch():
    batch = make_batch(rng=random.Random(2), proofs=6, invalid=True)
    check = check_batch(batch=batch, expected_root=batch.merkle_root)
    assert check.root_matches
    assert len(check.invalid_proofs) == 1
    assert not check.ok


def test_it_rejects_a_batch_whose_root_differs():
    batch = make_batch(rng=random.Random(3), proofs=3)
    other = make_batch(rng=random.Random(4), proofs=3)
    check = check_batch(batch=batch, expected_root=other.merkle_root)
    assert not check.root_matches
    assert not check.ok


def test_it_pads_the_tree_by_repeating_the_last_leaf():
    leaves = [bytes([i]) * 32 for i in range(3)]
    assert merkle_root(leaves) == merkle_root([*leaves, leaves[-1]])
    assert merkle_root(leaves[:1]) == leaves[0]


def test_it_changes_the_root_when_a_proof_is_tampered():
    batch = make_batch(rng=random.Random(5), proofs=4)
    tampered = dict(batch.proofs[0], statement="something else")
    assert proof_leaf(tampered) != proof_leaf(batch.proofs[0])


@pytest.mark.parametrize(
    "raw", [b"not json", b"[]", b'{"version": 2, "proofs": []}', b'{"version": 1, "proofs": []}']
)
def test_it_refuses_malformed_batch_documents(raw):
    with pytest.raises(BatchFormatError):
        parse_batch(raw)
