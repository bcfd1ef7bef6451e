"""Pairing backends: the pyrevm precompile agrees with the py_ecc reference, and selection by name.

Each shared vector costs one py_ecc pairing check (~0.3 s); the pyrevm side costs milliseconds.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Iterator

import pytest
from django.core.exceptions import ImproperlyConfigured

from bls import (
    G1_GENERATOR,
    G1_INFINITY,
    G2_GENERATOR,
    G2_INFINITY,
    G1Point,
    G2Point,
    InvalidPoint,
    KeyPair,
    PairingBackend,
    PairingBackendError,
    PyEccBackend,
    PyrevmBackend,
    aggregate_g1,
    aggregate_g2,
    available_backends,
    g1_add,
    g1_mul,
    g1_neg,
    g2_mul,
    g2_neg,
    hash_to_g1,
    keypair_from_secret,
    keypair_from_seed,
    pairing_backend,
)
from bls import backends as backends_module
from tests.test_bls import _twist_point_outside_subgroup

HAS_PYREVM = importlib.util.find_spec("pyrevm") is not None
needs_pyrevm = pytest.mark.skipif(
    not HAS_PYREVM, reason="pyrevm (the fast backend's package) is not installed"
)

MESSAGE = bytes.fromhex("5a" * 32)
NEG_G2 = g2_neg(G2_GENERATOR)

Pairs = list[tuple[G1Point, G2Point]]


@pytest.fixture(scope="module")
def signers() -> list[KeyPair]:
    return [keypair_from_seed("test-bls-backends", i) for i in range(3)]


@pytest.fixture
def fresh_selection() -> Iterator[None]:
    backends_module._instance.cache_clear()
    backends_module._auto_name.cache_clear()
    yield
    backends_module._instance.cache_clear()
    backends_module._auto_name.cache_clear()


def _vectors(signers: list[KeyPair]) -> dict[str, tuple[Pairs, bool]]:
    alice = signers[0]
    sig = alice.sign(MESSAGE)
    h = hash_to_g1(MESSAGE)
    aggregate_sig = aggregate_g1(k.sign(MESSAGE) for k in signers)
    aggregate_pk = aggregate_g2(k.public_key_g2 for k in signers)
    two_pk = aggregate_g2(k.public_key_g2 for k in signers[:2])
    return {
        "valid signature": ([(sig, NEG_G2), (h, alice.public_key_g2)], True),
        "tampered signature": ([(g1_add(sig, G1_GENERATOR), NEG_G2), (h, alice.public_key_g2)], False),
        "wrong key": ([(sig, NEG_G2), (h, signers[1].public_key_g2)], False),
        "e(G1,G2) e(-G1,G2)": ([(G1_GENERATOR, G2_GENERATOR), (g1_neg(G1_GENERATOR), G2_GENERATOR)], True),
        "e(3 G1,G2) e(G1,-3 G2)": (
            [(g1_mul(G1_GENERATOR, 3), G2_GENERATOR), (G1_GENERATOR, g2_mul(NEG_G2, 3))],
            True,
        ),
        "e(G1,G2) alone": ([(G1_GENERATOR, G2_GENERATOR)], False),
        "infinity pairs skipped": (
            [(G1_INFINITY, G2_GENERATOR), (G1_GENERATOR, G2_INFINITY), (G1_INFINITY, G2_INFINITY)],
            True,
        ),
        "infinity next to a live pair": ([(G1_INFINITY, G2_GENERATOR), (G1_GENERATOR, G2_GENERATOR)], False),
        "empty product": ([], True),
        "3-signer aggregate": ([(aggregate_sig, NEG_G2), (h, aggregate_pk)], True),
        "aggregate missing a key": ([(aggregate_sig, NEG_G2), (h, two_pk)], False),
    }


VECTOR_IDS = [
    "valid signature",
    "tampered signature",
    "wrong key",
    "e(G1,G2) e(-G1,G2)",
    "e(3 G1,G2) e(G1,-3 G2)",
    "e(G1,G2) alone",
    "infinity pairs skipped",
    "infinity next to a live pair",
    "empty product",
    "3-signer aggregate",
    "aggregate missing a key",
]


@needs_pyrevm
@pytest.mark.parametrize("vector", VECTOR_IDS)
def test_it_agrees_with_py_ecc_on_shared_vectors(vector: str, signers: list[KeyPair]) -> None:
    vectors = _vectors(signers)
    assert list(vectors) == VECTOR_IDS
    pairs, expected = vectors[vector]
    assert PyEccBackend().pairing_check(pairs) is expected
    assert PyrevmBackend().pairing_check(pairs) is expected


def test_it_lists_the_py_ecc_reference_as_always_available() -> None:
    names = available_backends()
    assert names[-1] == "py-ecc"
    assert ("pyrevm" in names) is HAS_PYREVM


def test_it_satisfies_the_backend_protocol() -> None:
    for name in available_backends():
        backend = pairing_backend(name)
        assert isinstance(backend, PairingBackend)
        assert backend.name == name


@needs_pyrevm
def test_it_picks_the_faster_backend_for_auto_and_logs_the_choice_once(
    caplog: pytest.LogCaptureFixture, fresh_selection: None
) -> None:
    with caplog.at_level(logging.INFO, logger="bls.backends"):
        assert pairing_backend("auto").name == "pyrevm"
        assert pairing_backend("auto") is pairing_backend("auto")
    assert [r.getMessage() for r in caplog.records] == [
        "BLS pairing backend: pyrevm (auto; available: pyrevm, py-ecc)"
    ]


def test_it_reads_the_backend_from_settings(settings: object, fresh_selection: None) -> None:
    settings.BLS_PAIRING_BACKEND = "py-ecc"  # type: ignore[attr-defined]
    assert pairing_backend().name == "py-ecc"
    settings.BLS_PAIRING_BACKEND = "auto"  # type: ignore[attr-defined]
    assert pairing_backend().name == ("pyrevm" if HAS_PYREVM else "py-ecc")


def test_it_rejects_an_unknown_backend_name() -> None:
    with pytest.raises(
        PairingBackendError, match=r"unknown BLS pairing backend 'blst'.*auto, pyrevm, py-ecc"
    ):
        pairing_backend("blst")
    assert issubclass(PairingBackendError, ImproperlyConfigured)


def test_it_falls_back_to_py_ecc_and_refuses_a_named_backend_that_is_not_installed(
    monkeypatch: pytest.MonkeyPatch, fresh_selection: None
) -> None:
    monkeypatch.setitem(sys.modules, "pyrevm", None)  # makes `import pyrevm` fail
    assert available_backends() == ["py-ecc"]
    assert pairing_backend("auto").name == "py-ecc"
    with pytest.raises(PairingBackendError, match="'pyrevm' is not installed"):
        pairing_backend("pyrevm")


@needs_pyrevm
def test_it_raises_invalid_point_when_the_precompile_rejects_a_key_outside_the_subgroup() -> None:
    x, y = _twist_point_outside_subgroup()
    outside = G2Point(x, y)
    with pytest.raises(InvalidPoint, match="precompile 0x08 rejected"):
        PyrevmBackend().pairing_check([(G1_GENERATOR, outside)])


def test_it_benchmarks_naive_and_aggregated_verification_per_backend() -> None:
    from bls.bench import bench_backends

    report = bench_backends(n_signatures=2)
    assert report["n_signatures"] == 2
    assert report["backends"] == available_backends()
    assert set(report["pairing_check_ms"]) == set(available_backends())
    assert report["naive_py_ecc_ms"] > 0
    assert report["aggregated_py_ecc_ms"] > 0
    assert (report["aggregated_fast_ms"] is not None) is HAS_PYREVM


@pytest.mark.parametrize("name", ["py-ecc", pytest.param("pyrevm", marks=needs_pyrevm)])
def test_it_tells_a_g2_point_outside_the_subgroup_from_a_key_exactly_as_py_ecc_does(name: str) -> None:
    backend = pairing_backend(name)
    x, y = _twist_point_outside_subgroup()
    outside = G2Point(x, y)
    key = keypair_from_secret(0xC0FFEE).public_key_g2
    assert backend.g2_in_subgroup(outside) is False
    assert backend.g2_in_subgroup(key) is True
    assert backend.g2_in_subgroup(G2_INFINITY) is True
    # What the verifier parses operator keys with: the backend's check, the same refusal.
    (x_imag, x_real), (y_imag, y_real) = outside.to_evm()
    encoded = {"X": [hex(x_imag), hex(x_real)], "Y": [hex(y_imag), hex(y_real)]}
    with pytest.raises(InvalidPoint, match="not in G2 subgroup"):
        G2Point.from_hex(encoded, in_subgroup=backend.g2_in_subgroup)
    (x_imag, x_real), (y_imag, y_real) = key.to_evm()
    parsed = G2Point.from_hex(
        {"X": [hex(x_imag), hex(x_real)], "Y": [hex(y_imag), hex(y_real)]}, in_subgroup=backend.g2_in_subgroup
    )
    assert parsed == key
