"""Verify many signatures with few pairing checks, isolating the bad ones by bisection.

Item i signs a 32-byte message m_i (a batch identifier) with key pk_i. A set of items is checked with
one product of pairings and a single final exponentiation,

    e(sum r_i * sig_i, -G2) * prod over groups g of e(H_g, K_g) == 1

where the r_i are fresh random 64-bit weights from ``secrets``, drawn per call and never revealed,
and the items are grouped by message (H_g = H(m), K_g = sum r_i * pk_i over the group) or by key
(H_g = sum r_i * H(m_i), K_g = pk), whichever costs less: one Miller loop per group plus one, and a G2
sum per item of a message group with several keys. All items of one key make one group, so a pass over
many batches of the same operators has one pair per operator, plus one.

Without weights the check only sees sum(sig_i), so two forgeries that cancel (sig_a + D and
sig_b - D) would pass. Writing sig_i = s_i*G1, H(m_i) = h_i*G1 and pk_i = k_i*G2, either grouping
gives the same product e(G1, G2)^(sum r_i*(h_i*k_i - s_i)), so the check passes iff
sum r_i*(h_i*k_i - s_i) == 0 mod q: for any set with a wrong signature that holds for at most one
value of that item's weight, i.e. with probability <= 2**-64, so every check below means the same as
verifying each of its items on its own (rogue keys and distinct messages included) up to that
probability.

If the set fails it is split in halves, recursively: whole groups first, then within one group. The
weights stay fixed for the whole call, and the exponent is a sum over items whatever the grouping,
which makes the checks consistent: when a failing set's left half passes, its right half must fail,
so that check is skipped. A single item is checked without weight (a nonzero weight only raises
the pairing product to a power, which cannot turn it into 1). Cost: one pairing check when all are
valid; about 2*k*log2(n/k) when k of n are invalid; at most 2n - 1 when all are.

The weighted sums are multi-scalar multiplications (Pippenger's bucket method, sharing the doublings
across points): ~1.2 ms per item (key and signature) at n = 100 in py_ecc, against ~6 ms for
independent 64-bit multiplications. G1 sums (signatures, and hashes in a group of one key) run on
plain integers instead of py_ecc's field objects: ~0.1 ms per item, a fraction of a G2 sum. That is
negligible next to a py-ecc pairing check (~0.3 s) but not next to a pyrevm one (~3.7 ms): there, an
all-valid batch of 100 takes ~125 ms against ~360 ms one by one, while bisecting many invalid items
can cost more than checking them one by one.
"""

from __future__ import annotations

import secrets
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

from py_ecc.optimized_bn128 import Z2, add, double, multiply
from py_ecc.typing import Optimized_Field, Optimized_Point3D

from .backends import PairingBackend, pairing_backend
from .points import (
    FIELD_MODULUS,
    G1_INFINITY,
    G1Point,
    G2Point,
    InvalidPoint,
    JacobianG2,
    _g2_from_jacobian,
    _g2_to_jacobian,
)
from .scheme import _NEG_G2_GENERATOR, hash_to_g1

WEIGHT_BITS = 64


@dataclass(frozen=True)
class SignedItem:
    """One signature to check; ``key`` is the caller's handle for it (a row id, an operator id)."""

    key: Hashable
    public_key_g2: G2Point
    signature: G1Point

    def __post_init__(self) -> None:
        # Points are what make the check meaningful; a raw tuple here is a caller bug.
        if not isinstance(self.public_key_g2, G2Point):
            raise TypeError(f"public_key_g2 must be a G2Point, got {type(self.public_key_g2).__name__}")
        if not isinstance(self.signature, G1Point):
            raise TypeError(f"signature must be a G1Point, got {type(self.signature).__name__}")


@dataclass(frozen=True)
class BatchVerifyResult:
    """Keys of the valid and invalid items, each in input order, and the pairing checks spent."""

    valid: list[Hashable]
    invalid: list[Hashable]
    pairing_checks: int


def _window_bits(n: int) -> int:
    """Pippenger window size minimising group additions for n 64-bit scalars; 0 = no buckets."""
    best_bits, best_cost = 0, n * (WEIGHT_BITS + WEIGHT_BITS // 2)  # double-and-add per point
    for bits in range(1, 13):
        windows = -(-WEIGHT_BITS // bits)
        cost = windows * (n + 2 ** (bits + 1)) + WEIGHT_BITS
        if cost < best_cost:
            best_bits, best_cost = bits, cost
    return best_bits


def _msm(
    points: Sequence[Optimized_Point3D[Optimized_Field]],
    scalars: Sequence[int],
    zero: Optimized_Point3D[Optimized_Field],
) -> Optimized_Point3D[Optimized_Field]:
    """sum scalars[i] * points[i] for scalars below 2**WEIGHT_BITS (Jacobian coordinates)."""
    bits = _window_bits(len(points))
    if bits == 0:
        total = zero
        for point, scalar in zip(points, scalars, strict=True):
            total = add(total, multiply(point, scalar))
        return total
    mask = (1 << bits) - 1
    total = zero
    for shift in reversed(range(0, WEIGHT_BITS, bits)):
        for _ in range(bits):
            total = double(total)
        buckets = [zero] * (mask + 1)
        for point, scalar in zip(points, scalars, strict=True):
            digit = (scalar >> shift) & mask
            if digit:
                buckets[digit] = add(buckets[digit], point)
        # sum digit * bucket[digit] with 2 * mask additions: a running suffix sum, summed again.
        running = window = zero
        for digit in range(mask, 0, -1):
            running = add(running, buckets[digit])
            window = add(window, running)
        total = add(total, window)
    return total


# G1 sums on plain integers in Jacobian coordinates (x = X/Z^2, y = Y/Z^3; Z = 0 is infinity), the curve
# y^2 = x^3 + 3 (a = 0): ~10x faster than py_ecc's FQ objects, and G1 sums are most of a pass's arithmetic.
_P = FIELD_MODULUS
_JacobianInts = tuple[int, int, int]
_INFINITY: _JacobianInts = (1, 1, 0)


def _jacobian_double(point: _JacobianInts) -> _JacobianInts:
    x, y, z = point
    if z == 0 or y == 0:
        return _INFINITY
    a, b = x * x % _P, y * y % _P
    c = b * b % _P
    d = 2 * ((x + b) * (x + b) - a - c) % _P
    e = 3 * a % _P
    x3 = (e * e - 2 * d) % _P
    return x3, (e * (d - x3) - 8 * c) % _P, 2 * y * z % _P


def _jacobian_add_affine(point: _JacobianInts, x2: int, y2: int) -> _JacobianInts:
    """point + (x2, y2), the second point affine (mixed addition)."""
    x1, y1, z1 = point
    if z1 == 0:
        return x2, y2, 1
    z1z1 = z1 * z1 % _P
    h = (x2 * z1z1 - x1) % _P
    r = 2 * (y2 * z1 * z1z1 - y1) % _P
    if h == 0:
        return _jacobian_double(point) if r == 0 else _INFINITY
    hh = h * h % _P
    i = 4 * hh % _P
    j = h * i % _P
    v = x1 * i % _P
    x3 = (r * r - j - 2 * v) % _P
    return x3, (r * (v - x3) - 2 * y1 * j) % _P, ((z1 + h) * (z1 + h) - z1z1 - hh) % _P


def _jacobian_add(a: _JacobianInts, b: _JacobianInts) -> _JacobianInts:
    x1, y1, z1 = a
    x2, y2, z2 = b
    if z1 == 0:
        return b
    if z2 == 0:
        return a
    z1z1, z2z2 = z1 * z1 % _P, z2 * z2 % _P
    u1, u2 = x1 * z2z2 % _P, x2 * z1z1 % _P
    s1, s2 = y1 * z2 * z2z2 % _P, y2 * z1 * z1z1 % _P
    h = (u2 - u1) % _P
    r = 2 * (s2 - s1) % _P
    if h == 0:
        return _jacobian_double(a) if r == 0 else _INFINITY
    i = 4 * h * h % _P
    j = h * i % _P
    v = u1 * i % _P
    x3 = (r * r - j - 2 * v) % _P
    return x3, (r * (v - x3) - 2 * s1 * j) % _P, ((z1 + z2) * (z1 + z2) - z1z1 - z2z2) * h % _P


def _g1_msm(points: Sequence[G1Point], scalars: Sequence[int]) -> G1Point:
    """sum scalars[i] * points[i] for scalars below 2**WEIGHT_BITS: ``_msm`` for G1, on integers."""
    bits = max(_window_bits(len(points)), 1)
    mask = (1 << bits) - 1
    live = [(p.x, p.y, s) for p, s in zip(points, scalars, strict=True) if not p.is_infinity()]
    total = _INFINITY
    for shift in reversed(range(0, WEIGHT_BITS, bits)):
        for _ in range(bits):
            total = _jacobian_double(total)
        buckets = [_INFINITY] * (mask + 1)
        for x, y, scalar in live:
            digit = (scalar >> shift) & mask
            if digit:
                buckets[digit] = _jacobian_add_affine(buckets[digit], x, y)
        running = window = _INFINITY
        for digit in range(mask, 0, -1):
            running = _jacobian_add(running, buckets[digit])
            window = _jacobian_add(window, running)
        total = _jacobian_add(total, window)
    x, y, z = total
    if z == 0:
        return G1_INFINITY
    z_inv = pow(z, -1, _P)
    z_inv2 = z_inv * z_inv % _P
    return G1Point(x * z_inv2 % _P, y * z_inv2 * z_inv % _P)


class _Bisection:
    def __init__(
        self,
        *,
        message_points: Sequence[G1Point],
        messages: Sequence[int],
        items: Sequence[SignedItem],
        backend: PairingBackend,
    ):
        self.message_points = message_points
        self.messages = messages  # item index -> index into message_points
        self.items = items
        self.backend = backend
        # Drawn after the items are fixed and never exposed: the submitter cannot adapt to them.
        self.weights = [secrets.randbelow(2**WEIGHT_BITS - 1) + 1 for _ in items]
        # Converted when a G2 sum needs them: a check grouped by key never does.
        self.keys: dict[int, JacobianG2] = {}
        self.valid: list[int] = []
        self.invalid: list[int] = []
        self.checks = 0

    def _key(self, index: int) -> JacobianG2:
        key = self.keys.get(index)
        if key is None:
            key = self.keys[index] = _g2_to_jacobian(self.items[index].public_key_g2)
        return key

    def groups(self, indices: Sequence[int]) -> list[list[int]]:
        """The items of a check grouped by what its pairs share: one pair per message, or one per key.

        Whichever costs less: a pair costs about what a G2 sum costs per item (~2.5 ms each with pyrevm,
        ~2 ms per Miller loop in py_ecc), and a message group signed by several keys needs that G2 sum,
        where a key group sums in G1 (a twentieth of it; an eighth for a group of one). So even two batches
        signed by the same operators check cheaper by key, although they have fewer messages than keys.
        """
        by_message: dict[int, list[int]] = {}
        by_key: dict[G2Point, list[int]] = {}
        for i in indices:
            by_message.setdefault(self.messages[i], []).append(i)
            by_key.setdefault(self.items[i].public_key_g2, []).append(i)
        g2_summed = sum(
            len(group)
            for group in by_message.values()
            if len({self.items[i].public_key_g2 for i in group}) > 1
        )
        message_cost = len(by_message) + g2_summed
        key_cost = len(by_key) + len(indices) / 8  # a key group of one item is a whole G1 multiplication
        return list(by_message.values()) if message_cost <= key_cost else list(by_key.values())

    def pairs(self, indices: Sequence[int]) -> list[tuple[G1Point, G2Point]]:
        if len(indices) == 1:
            item = self.items[indices[0]]
            return [
                (item.signature, _NEG_G2_GENERATOR),
                (self.message_points[self.messages[indices[0]]], item.public_key_g2),
            ]
        weights = [self.weights[i] for i in indices]
        signature = _g1_msm([self.items[i].signature for i in indices], weights)
        pairs = [(signature, _NEG_G2_GENERATOR)]
        for group in self.groups(indices):
            group_weights = [self.weights[i] for i in group]
            if len({self.items[i].public_key_g2 for i in group}) == 1:
                # One key: e(sum r_i H(m_i), pk), a G1 sum (cheaper than G2 and the key's pair is fixed).
                point = _g1_msm([self.message_points[self.messages[i]] for i in group], group_weights)
                pairs.append((point, self.items[group[0]].public_key_g2))
            else:
                # One message: e(H(m), sum r_i pk_i).
                key = _g2_from_jacobian(_msm([self._key(i) for i in group], group_weights, Z2))
                pairs.append((self.message_points[self.messages[group[0]]], key))
        return pairs

    def passes(self, indices: Sequence[int]) -> bool:
        self.checks += 1
        try:
            return self.backend.pairing_check(self.pairs(indices))
        except InvalidPoint:
            # Only a key outside the G2 subgroup gets here (the precompile refuses it): bisection
            # then narrows it down to that item, which is invalid.
            return False

    def run(self, indices: list[int]) -> None:
        if self.passes(indices):
            self.valid += indices
        else:
            self.split_failing(indices)

    def split_failing(self, indices: list[int]) -> None:
        if len(indices) == 1:
            self.invalid += indices
            return
        # Whole groups first (each half then costs about half the Miller loops), then within one group.
        groups = self.groups(indices)
        if len(groups) > 1:
            middle = len(groups) // 2
            left = [i for group in groups[:middle] for i in group]
            right = [i for group in groups[middle:] for i in group]
        else:
            middle = len(indices) // 2
            left, right = indices[:middle], indices[middle:]
        if self.passes(left):
            self.valid += left
            # Same weights: sum(right) = sum(all) - sum(left) != 0, so right fails unchecked.
            self.split_failing(right)
        else:
            self.split_failing(left)
            self.run(right)


def verify_same_message(
    *, message: bytes, items: Sequence[SignedItem], backend: PairingBackend | None = None
) -> BatchVerifyResult:
    """Split ``items`` (all signing ``message``) into valid and invalid with few pairing checks.

    Equivalent to ``verify`` on each item (see the module docstring for the 2**-64 bound). Points at
    infinity are invalid without a pairing, as in ``verify``. Public keys must be in the G2 subgroup
    (``G2Point.from_evm``/``from_hex``) and, for the aggregate to be usable on chain, registered with
    proof of possession. ``backend`` defaults to ``pairing_backend()`` (the configured one).
    """
    return verify_across_messages(items_by_message={message: items}, backend=backend)


def verify_across_messages(
    *, items_by_message: Mapping[bytes, Sequence[SignedItem]], backend: PairingBackend | None = None
) -> BatchVerifyResult:
    """``verify_same_message`` for items of several messages at once: one pairing check when all are valid.

    The check is one product of pairings with a single final exponentiation (see the module docstring),
    whatever the number of messages; on failure, bisection splits whole groups of the check's pairs first.
    Item keys must be distinct across messages. Results list keys in input order, message by message.
    """
    message_points = [hash_to_g1(message) for message in items_by_message]  # rejects anything but 32 bytes
    items = [item for message_items in items_by_message.values() for item in message_items]
    messages = [m for m, message_items in enumerate(items_by_message.values()) for _ in message_items]
    if len({item.key for item in items}) != len(items):
        raise ValueError("item keys must be distinct across messages")
    if not items:
        return BatchVerifyResult(valid=[], invalid=[], pairing_checks=0)
    if backend is None:
        backend = pairing_backend()
    candidates = [
        i
        for i, item in enumerate(items)
        if not (item.signature.is_infinity() or item.public_key_g2.is_infinity())
    ]
    rejected = sorted(set(range(len(items))) - set(candidates))
    bisection = _Bisection(
        message_points=message_points,
        messages=[messages[i] for i in candidates],
        items=[items[i] for i in candidates],
        backend=backend,
    )
    if candidates:
        bisection.run(list(range(len(candidates))))
    valid = sorted(candidates[i] for i in bisection.valid)
    invalid = sorted([*rejected, *(candidates[i] for i in bisection.invalid)])
    return BatchVerifyResult(
        valid=[items[i].key for i in valid],
        invalid=[items[i].key for i in invalid],
        pairing_checks=bisection.checks,
    )
