"""How much the aggregated check and the pairing backends save: ``python -m bls.bench [N]``.

Times, in milliseconds, for one batch of N signatures on one message: one py-ecc ``verify`` per
signature (measured on at most 5, then extrapolated), the aggregated check with each backend, and a
single two-pair pairing check per backend; ``naive_fast_ms`` is N such checks on the fast backend
(what verifying one by one would cost there). Needs no database and no Django settings.
"""

from __future__ import annotations

import functools
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from eth_utils import keccak

from .backends import PY_ECC, PairingBackend, available_backends, pairing_backend
from .batch import SignedItem, verify_same_message
from .keys import keypair_from_seed
from .points import G2_GENERATOR, g2_neg
from .scheme import hash_to_g1, verify

_NAIVE_SAMPLE = 5


def _ms(function: Callable[[], object], *, repeat: int = 1) -> float:
    """Median wall time of ``repeat`` calls, in ms."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 3)


def _aggregated(message: bytes, items: list[SignedItem], backend: PairingBackend) -> None:
    result = verify_same_message(message=message, items=items, backend=backend)
    if result.pairing_checks != 1 or result.invalid:
        raise RuntimeError(f"aggregated check failed on {backend.name}: {result}")


def bench_backends(n_signatures: int = 100) -> dict[str, Any]:
    if n_signatures < 1:
        raise ValueError("n_signatures must be at least 1")
    message = keccak(b"bls.bench")
    keys = [keypair_from_seed("bls-bench", i) for i in range(n_signatures)]
    items = [
        SignedItem(key=i, public_key_g2=k.public_key_g2, signature=k.sign(message))
        for i, k in enumerate(keys)
    ]
    names = available_backends()
    fast = next((name for name in names if name != PY_ECC), None)

    sample = items[: min(n_signatures, _NAIVE_SAMPLE)]

    def naive_sample() -> None:
        for item in sample:
            if not verify(public_key_g2=item.public_key_g2, message=message, signature=item.signature):
                raise RuntimeError("benchmark signature does not verify")

    naive_ms = _ms(naive_sample) * n_signatures / len(sample)

    two_pairs = [(items[0].signature, g2_neg(G2_GENERATOR)), (hash_to_g1(message), items[0].public_key_g2)]
    pairing_check_ms: dict[str, float] = {}
    aggregated_ms: dict[str, float] = {}
    for name in names:
        backend = pairing_backend(name)
        # py-ecc takes ~0.3 s per check: two runs are enough for its median.
        repeat = 2 if name == PY_ECC else 20
        pairing_check_ms[name] = _ms(functools.partial(backend.pairing_check, two_pairs), repeat=repeat)
        aggregated_ms[name] = _ms(functools.partial(_aggregated, message, items, backend))

    return {
        "n_signatures": n_signatures,
        "backends": names,
        "fast_backend": fast,
        "naive_py_ecc_ms": round(naive_ms, 3),
        "naive_py_ecc_extrapolated_from": len(sample),
        "aggregated_py_ecc_ms": aggregated_ms[PY_ECC],
        "aggregated_fast_ms": aggregated_ms[fast] if fast else None,
        "pairing_check_ms": pairing_check_ms,
        "naive_fast_ms": round(pairing_check_ms[fast] * n_signatures, 3) if fast else None,
    }


if __name__ == "__main__":
    print(json.dumps(bench_backends(int(sys.argv[1]) if len(sys.argv) > 1 else 100), indent=2))
