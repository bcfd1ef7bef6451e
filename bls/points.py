"""BN254 (alt_bn128) point types, strict parsing and EVM/JSON encoding.

Coordinates are kept as plain affine integers so points are hashable, comparable and cheap to
serialise; py_ecc's Jacobian FQ/FQ2 representation only appears inside the private conversion
helpers that the arithmetic in this package uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from py_ecc.fields import optimized_bn128_FQ as FQ
from py_ecc.fields import optimized_bn128_FQ2 as FQ2
from py_ecc.optimized_bn128 import (
    Z1,
    Z2,
    add,
    b2,
    curve_order,
    field_modulus,
    is_inf,
    is_on_curve,
    multiply,
    neg,
    normalize,
)
from py_ecc.typing import Optimized_Point3D

FIELD_MODULUS: int = field_modulus  # p, the base field
CURVE_ORDER: int = curve_order  # r, the order of G1 and G2 (the scalar field Fr)

_UINT256_HEX = re.compile(r"0x[0-9a-fA-F]{1,64}")

JacobianG1 = Optimized_Point3D[FQ]
JacobianG2 = Optimized_Point3D[FQ2]


class InvalidPoint(ValueError):
    """Raised for any encoding that does not describe a valid group element."""


def _check_coordinate(value: object, name: str) -> int:
    # bool is an int subclass; a True/False coordinate is always a caller bug, never data.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidPoint(f"{name} coordinate must be an int, got {type(value).__name__}")
    if not 0 <= value < FIELD_MODULUS:
        raise InvalidPoint(f"{name} coordinate out of range")
    return value


def _check_pair(value: object, name: str) -> tuple[int, int]:
    if not isinstance(value, tuple) or len(value) != 2:
        raise InvalidPoint(f"{name} must be a tuple of two field elements")
    return _check_coordinate(value[0], f"{name} real"), _check_coordinate(value[1], f"{name} imag")


def _parse_hex(value: object, name: str) -> int:
    if not isinstance(value, str):
        raise InvalidPoint(f"{name} must be a hex string, got {type(value).__name__}")
    # fullmatch, not int(value, 16): int() also accepts whitespace, '_', signs and no 0x prefix.
    if not _UINT256_HEX.fullmatch(value):
        if value[:2] == "0x" and len(value) > 66 and all(c in "0123456789abcdefABCDEF" for c in value[2:]):
            raise InvalidPoint(f"{name} is longer than 32 bytes")
        raise InvalidPoint(f"{name} is not a 0x-prefixed hex string of at most 32 bytes")
    return int(value, 16)


def _check_keys(value: object) -> dict[object, object]:
    if not isinstance(value, dict):
        raise InvalidPoint(f"point must be an object with keys X and Y, got {type(value).__name__}")
    missing = {"X", "Y"} - value.keys()
    if missing:
        raise InvalidPoint(f"point is missing key(s) {', '.join(sorted(missing))}")
    extra = value.keys() - {"X", "Y"}
    if extra:
        raise InvalidPoint(f"point has unexpected key(s) {', '.join(sorted(map(str, extra)))}")
    return value


def _hex32(value: int) -> str:
    return f"0x{value:064x}"


@dataclass(frozen=True)
class G1Point:
    """Affine G1 point; (0, 0) encodes infinity exactly as the EVM precompiles do.

    The constructor checks range and curve membership (cheap); G1 has cofactor 1, so on-curve
    already means in-subgroup.
    """

    x: int
    y: int

    def __post_init__(self) -> None:
        x = _check_coordinate(self.x, "X")
        y = _check_coordinate(self.y, "Y")
        if (x, y) != (0, 0) and (y * y - x * x * x - 3) % FIELD_MODULUS != 0:
            raise InvalidPoint("G1 point is not on curve")

    def is_infinity(self) -> bool:
        return self.x == 0 and self.y == 0

    def to_evm(self) -> tuple[int, int]:
        return (self.x, self.y)

    def to_hex(self) -> dict[str, str]:
        return {"X": _hex32(self.x), "Y": _hex32(self.y)}

    @classmethod
    def from_evm(cls, x: int, y: int) -> G1Point:
        return cls(x, y)

    @classmethod
    def from_hex(cls, value: object) -> G1Point:
        data = _check_keys(value)
        return cls(_parse_hex(data["X"], "X"), _parse_hex(data["Y"], "Y"))


@dataclass(frozen=True)
class G2Point:
    """Affine point on the sextic twist over FQ2, coordinates in py_ecc order (real, imag).

    ((0, 0), (0, 0)) is infinity, as in the EVM. The constructor checks range and twist-curve
    membership; the r-torsion subgroup check (a scalar multiplication, ~20 ms) is done by
    ``from_evm``/``from_hex``, which are the only entry points for untrusted data.
    """

    x: tuple[int, int]
    y: tuple[int, int]

    def __post_init__(self) -> None:
        x = _check_pair(self.x, "X")
        y = _check_pair(self.y, "Y")
        if self.is_infinity():
            return
        if not is_on_curve((FQ2(list(x)), FQ2(list(y)), FQ2.one()), b2):
            raise InvalidPoint("G2 point is not on the twist curve")

    def is_infinity(self) -> bool:
        return self.x == (0, 0) and self.y == (0, 0)

    def to_evm(self) -> tuple[tuple[int, int], tuple[int, int]]:
        # Solidity's BN254.G2Point and precompile 0x08 take each FQ2 element as [imag, real].
        return ((self.x[1], self.x[0]), (self.y[1], self.y[0]))

    def to_hex(self) -> dict[str, list[str]]:
        (xi, xr), (yi, yr) = self.to_evm()
        return {"X": [_hex32(xi), _hex32(xr)], "Y": [_hex32(yi), _hex32(yr)]}

    @classmethod
    def from_evm(
        cls, x: Sequence[int], y: Sequence[int], *, in_subgroup: Callable[[G2Point], bool] | None = None
    ) -> G2Point:
        """Parse Solidity order ([x_imag, x_real], [y_imag, y_real]) and check the subgroup (with
        ``in_subgroup`` when given: a pairing backend's faster, equally exact check)."""
        for name, pair in (("X", x), ("Y", y)):
            if isinstance(pair, str | bytes) or not isinstance(pair, Sequence) or len(pair) != 2:
                raise InvalidPoint(f"{name} must be a pair [imag, real]")
        point = cls((x[1], x[0]), (y[1], y[0]))
        # The twist has cofactor 2p - r, so being on it does not imply order r; points outside
        # the subgroup would make the pairing meaningless (and precompile 0x08 rejects them).
        if not (in_subgroup or G2Point.in_subgroup)(point):
            raise InvalidPoint("G2 point is not in G2 subgroup")
        return point

    def in_subgroup(self) -> bool:
        """Whether r * P is infinity, in py_ecc (~25 ms): the reference answer."""
        return bool(is_inf(multiply(_g2_to_jacobian(self), CURVE_ORDER)))

    @classmethod
    def from_hex(cls, value: object, *, in_subgroup: Callable[[G2Point], bool] | None = None) -> G2Point:
        data = _check_keys(value)
        coords: list[list[int]] = []
        for name in ("X", "Y"):
            pair = data[name]
            if not isinstance(pair, list) or len(pair) != 2:
                raise InvalidPoint(f"{name} must be a list [imag, real] of two hex strings")
            coords.append([_parse_hex(pair[0], f"{name} imag"), _parse_hex(pair[1], f"{name} real")])
        return cls.from_evm(coords[0], coords[1], in_subgroup=in_subgroup)


G1_GENERATOR = G1Point(1, 2)
G2_GENERATOR = G2Point(
    (
        10857046999023057135944570762232829481370756359578518086990519993285655852781,
        11559732032986387107991004021392285783925812861821192530917403151452391805634,
    ),
    (
        8495653923123431417604973247489272438418190587263600148770280649306958101930,
        4082367875863433681332203403145435568316851327593401208105741076214120093531,
    ),
)
G1_INFINITY = G1Point(0, 0)
G2_INFINITY = G2Point((0, 0), (0, 0))


# --- py_ecc conversions (package-private) -------------------------------------------------------


def _fq2_ints(value: FQ2) -> tuple[int, int]:
    real, imag = value.coeffs
    return int(real) % FIELD_MODULUS, int(imag) % FIELD_MODULUS


def _g1_to_jacobian(point: G1Point) -> JacobianG1:
    if point.is_infinity():
        return Z1
    return (FQ(point.x), FQ(point.y), FQ.one())


def _g1_from_jacobian(point: JacobianG1) -> G1Point:
    if is_inf(point):
        return G1_INFINITY
    x, y = normalize(point)
    return G1Point(x.n, y.n)


def _g2_to_jacobian(point: G2Point) -> JacobianG2:
    if point.is_infinity():
        return Z2
    return (FQ2(list(point.x)), FQ2(list(point.y)), FQ2.one())


def _g2_from_jacobian(point: JacobianG2) -> G2Point:
    if is_inf(point):
        return G2_INFINITY
    x, y = normalize(point)
    return G2Point(_fq2_ints(x), _fq2_ints(y))


# --- group arithmetic ------------------------------------------------------------------------------


def g1_add(a: G1Point, b: G1Point) -> G1Point:
    return _g1_from_jacobian(add(_g1_to_jacobian(a), _g1_to_jacobian(b)))


def g1_neg(point: G1Point) -> G1Point:
    return _g1_from_jacobian(neg(_g1_to_jacobian(point)))


def g1_mul(point: G1Point, scalar: int) -> G1Point:
    # G1 has prime order r, so reducing first is exact and also handles negative scalars.
    return _g1_from_jacobian(multiply(_g1_to_jacobian(point), scalar % CURVE_ORDER))


def g2_add(a: G2Point, b: G2Point) -> G2Point:
    return _g2_from_jacobian(add(_g2_to_jacobian(a), _g2_to_jacobian(b)))


def g2_neg(point: G2Point) -> G2Point:
    return _g2_from_jacobian(neg(_g2_to_jacobian(point)))


def g2_mul(point: G2Point, scalar: int) -> G2Point:
    # Only valid for subgroup points (what every public constructor of keys produces).
    return _g2_from_jacobian(multiply(_g2_to_jacobian(point), scalar % CURVE_ORDER))
