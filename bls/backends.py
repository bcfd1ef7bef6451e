"""Interchangeable engines for the one expensive BLS primitive: a product-of-pairings check.

Everything else in this package (hashing, point arithmetic, aggregation) stays in py_ecc; only
``prod e(P_i, Q_i) == 1`` is delegated, because that is where py_ecc spends its time.

Backends (``settings.BLS_PAIRING_BACKEND``; default ``"auto"``):

- ``"py-ecc"``: pure Python on py_ecc's fields (``miller.pairing_check``: the same FQ12 elements as the
  reference ``scheme.pairing_check``, with each G2 point's Miller-loop lines computed once and cached),
  ~45 ms for the final exponentiation that every check pays once, plus ~7 ms per pair of a known G2
  point (operator keys, -G2) or ~50 ms for a new one; the reference takes ~0.3 s + ~170 ms per pair.
- ``"pyrevm"``: precompile 0x08 executed in-process by revm (Rust) through pyrevm, ~3.7 ms per
  two-pair check. It is an EVM's own precompile (revm, as in anvil and reth): same input encoding,
  same subgroup and range rules as the on-chain check. Preferred for that over the mcl bindings on
  PyPI (mclbn256: ~0.5 ms, but it initialises a different BN254 curve by default and is unmaintained).
- ``"auto"``: pyrevm when importable, else py-ecc.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from django.core.exceptions import ImproperlyConfigured

from .miller import pairing_check as _lined_pairing_check
from .points import G1_GENERATOR, G1Point, G2Point, InvalidPoint, g1_neg

logger = logging.getLogger(__name__)

AUTO = "auto"
PY_ECC = "py-ecc"
PYREVM = "pyrevm"

# Precompile 0x08 (EIP-197) and an arbitrary caller; the call is never committed to any state.
_PAIRING_PRECOMPILE = "0x" + "00" * 19 + "08"
_CALLER = "0x" + "00" * 19 + "01"
_TRUE_WORD = (1).to_bytes(32, "big")
_FALSE_WORD = bytes(32)


class PairingBackendError(ImproperlyConfigured):
    """Unknown backend name, or a named backend whose package is not installed."""


@runtime_checkable
class PairingBackend(Protocol):
    """Decides ``prod e(P_i, Q_i) == 1`` exactly as EVM precompile 0x08 does.

    Pairs with a point at infinity contribute 1 (the empty product is 1). G2 points must be in the
    r-torsion subgroup (``G2Point.from_evm``/``from_hex`` enforce it): a backend that checks it
    raises ``InvalidPoint`` for one that is not, as the precompile fails on it; py-ecc does not
    check and returns an arbitrary answer.
    """

    name: str

    def pairing_check(self, pairs: Sequence[tuple[G1Point, G2Point]]) -> bool: ...

    def g2_in_subgroup(self, point: G2Point) -> bool:
        """Whether a point on the twist has order r (what ``G2Point.from_hex`` checks), exactly."""
        ...


class PyEccBackend:
    """Pure Python: Miller loops on cached lines sharing their squarings, one shared final exponentiation."""

    name = PY_ECC

    def pairing_check(self, pairs: Sequence[tuple[G1Point, G2Point]]) -> bool:
        return _lined_pairing_check(pairs)

    def g2_in_subgroup(self, point: G2Point) -> bool:
        return point.in_subgroup()


def _encode_pairs(pairs: Sequence[tuple[G1Point, G2Point]]) -> bytes:
    """EIP-197 input: per pair G1 (x, y), then G2 (x_imag, x_real, y_imag, y_real), 32 bytes each."""
    words: list[int] = []
    for p, q in pairs:
        (x_imag, x_real), (y_imag, y_real) = q.to_evm()
        words += (p.x, p.y, x_imag, x_real, y_imag, y_real)
    return b"".join(word.to_bytes(32, "big") for word in words)


class PyrevmBackend:
    """Precompile 0x08 run by revm in-process. Raises ImportError if pyrevm is not installed."""

    name = PYREVM

    def __init__(self) -> None:
        import pyrevm

        self._evm_class = pyrevm.EVM

    def pairing_check(self, pairs: Sequence[tuple[G1Point, G2Point]]) -> bool:
        # Skipping infinity pairs here gives the same answer as sending them (the precompile
        # treats them as 1) and saves ~1.8 ms of precompile time per pair.
        live = [(p, q) for p, q in pairs if not (p.is_infinity() or q.is_infinity())]
        if not live:
            return True
        # A fresh EVM per call costs ~2 us and keeps the backend safe to share between threads
        # (a pyrevm EVM is a mutable Rust object). The default gas limit covers >1000 pairs.
        evm = self._evm_class()
        try:
            output = evm.message_call(caller=_CALLER, to=_PAIRING_PRECOMPILE, calldata=_encode_pairs(live))
        except RuntimeError as exc:
            # The precompile halts on anything that is not a valid group element; our point types
            # rule out everything but a G2 point outside the subgroup.
            raise InvalidPoint(f"precompile 0x08 rejected the input: {exc}") from exc
        if output == _TRUE_WORD:
            return True
        if output == _FALSE_WORD:
            return False
        raise RuntimeError(f"unexpected precompile 0x08 output {output.hex()}")

    def g2_in_subgroup(self, point: G2Point) -> bool:
        """The precompile checks every G2 point's subgroup (revm's, as on chain): e(g1, P) * e(-g1, P) is 1
        for any P it accepts. ~4 ms where py_ecc's scalar multiplication takes ~25 ms, once per operator key
        (a verifier restarted among 100 operators would spend 2.5 s of CPU on them)."""
        if point.is_infinity():
            return True
        try:
            return self.pairing_check([(G1_GENERATOR, point), (g1_neg(G1_GENERATOR), point)])
        except InvalidPoint:
            return False


# Fastest first: "auto" takes the first one that can be constructed.
_FACTORIES: dict[str, Callable[[], PairingBackend]] = {
    PYREVM: PyrevmBackend,
    PY_ECC: PyEccBackend,
}


@functools.cache
def _instance(name: str) -> PairingBackend:
    # Not cached when the factory raises, so installing the package later is picked up.
    return _FACTORIES[name]()


def available_backends() -> list[str]:
    """Names of the backends usable in this process, fastest first."""
    names = []
    for name in _FACTORIES:
        try:
            _instance(name)
        except ImportError:
            continue
        names.append(name)
    return names


@functools.cache
def _auto_name() -> str:
    # Cached so that the choice is made, and logged, once per process.
    names = available_backends()
    logger.info("BLS pairing backend: %s (auto; available: %s)", names[0], ", ".join(names))
    return names[0]


def _configured_name() -> str:
    from django.conf import settings

    # Usable without Django settings too (scripts, the benchmark): then it is "auto".
    if not settings.configured:
        return AUTO
    value = getattr(settings, "BLS_PAIRING_BACKEND", AUTO)
    if not isinstance(value, str):
        raise PairingBackendError(f"BLS_PAIRING_BACKEND must be a string, got {type(value).__name__}")
    return value


def pairing_backend(name: str | None = None) -> PairingBackend:
    """The backend called ``name``; None reads ``settings.BLS_PAIRING_BACKEND`` (default "auto").

    "auto" picks the fastest installed backend. A backend asked for by name that cannot be loaded
    raises PairingBackendError (an ImproperlyConfigured) rather than silently running 80x slower.
    """
    if name is None:
        name = _configured_name()
    if name == AUTO:
        return _instance(_auto_name())
    if name not in _FACTORIES:
        choices = ", ".join([AUTO, *_FACTORIES])
        raise PairingBackendError(f"unknown BLS pairing backend {name!r}; choose one of: {choices}")
    try:
        return _instance(name)
    except ImportError as exc:
        raise PairingBackendError(
            f"BLS pairing backend {name!r} is not installed ({exc}); install the project's pinned "
            f'dependencies or set BLS_PAIRING_BACKEND = "auto"'
        ) from exc
