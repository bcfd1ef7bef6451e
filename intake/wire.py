"""Aligned's signed task response as Go's gob carries it over net/rpc, to and from ``SignedResponse``.

The Go types (aligned_layer's core/types and eigensdk-go's crypto/bls, with gnark-crypto's field elements)::

    type SignedTaskResponse struct {
        BatchMerkleRoot [32]byte; SenderAddress [20]byte; BatchIdentifierHash [32]byte
        BlsSignature bls.Signature; OperatorId Bytes32
    }
    type Signature struct{ *G1Point }     type G1Point struct{ *G1Affine }
    type G1Affine struct{ X, Y Element }   type Element [4]uint64   type Bytes32 [32]byte

An ``Element`` holds x·2^256 mod p (Montgomery form), least significant 64-bit limb first. None of these types
has its own gob encoding, so they travel as plain structs and arrays (each byte of ``[32]byte`` as a uint).
"""

from __future__ import annotations

from typing import Any

from bls import FIELD_MODULUS, G1Point, InvalidPoint
from controlplane.gob import UINT, Array, Struct
from intake.parse import IntakeError, SignedResponse, signed_response_build

METHOD = "Aggregator.ProcessOperatorSignedTaskResponseV2"
PING = "Aggregator.ServerRunning"

BYTES32 = Array("[32]uint8", UINT, 32)
ADDRESS = Array("[20]uint8", UINT, 20)
ELEMENT = Array("Element", UINT, 4)
G1_AFFINE = Struct("G1Affine", (("X", ELEMENT), ("Y", ELEMENT)))
G1_POINT = Struct("G1Point", (("G1Affine", G1_AFFINE),))
SIGNATURE = Struct("Signature", (("G1Point", G1_POINT),))
SIGNED_TASK_RESPONSE = Struct(
    "SignedTaskResponse",
    (
        ("BatchMerkleRoot", BYTES32),
        ("SenderAddress", ADDRESS),
        ("BatchIdentifierHash", BYTES32),
        ("BlsSignature", SIGNATURE),
        ("OperatorId", Array("Bytes32", UINT, 32)),
    ),
)
# ServerRunning(_ *struct{}, reply *int64): an argument of no fields.
EMPTY = Struct("struct {}")

_R = pow(2, 256, FIELD_MODULUS)
_R_INVERSE = pow(_R, -1, FIELD_MODULUS)
_LIMB = (1 << 64) - 1


def element_to_int(limbs: list[int]) -> int:
    """A gnark-crypto ``Element`` (Montgomery form, little-endian limbs) as the field element it stands for."""
    mont = sum(limb << (64 * i) for i, limb in enumerate(limbs))
    if mont >= FIELD_MODULUS:
        raise InvalidPoint("field element out of range")
    return mont * _R_INVERSE % FIELD_MODULUS


def int_to_element(value: int) -> list[int]:
    mont = value * _R % FIELD_MODULUS
    return [(mont >> (64 * i)) & _LIMB for i in range(4)]


def _hex(values: Any, size: int, name: str) -> str:
    if not isinstance(values, list) or len(values) != size or not all(isinstance(v, int) for v in values):
        raise IntakeError(f"{name} must be [{size}]byte", field=name)
    if any(not 0 <= v < 256 for v in values):
        raise IntakeError(f"{name} holds a value that is not a byte", field=name)
    return "0x" + bytes(values).hex()


def _field(value: Any, *names: str) -> Any:
    for name in names:
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value


def signed_response_from_gob(value: Any) -> SignedResponse:
    """The decoded argument of ProcessOperatorSignedTaskResponseV2, checked as the JSON intake checks it."""
    if not isinstance(value, dict):
        raise IntakeError("the argument is not a SignedTaskResponse")
    unknown = sorted(set(value) - {name for name, _ in SIGNED_TASK_RESPONSE.fields})
    if unknown:
        raise IntakeError(f"unknown field {unknown[0]}", field=unknown[0])
    zero32 = [0] * 32
    root = _hex(value.get("BatchMerkleRoot", zero32), 32, "BatchMerkleRoot")
    sender = _hex(value.get("SenderAddress", [0] * 20), 20, "SenderAddress")
    identifier = _hex(value.get("BatchIdentifierHash", zero32), 32, "BatchIdentifierHash")
    operator_id = _hex(value.get("OperatorId", zero32), 32, "OperatorId")
    affine = _field(value, "BlsSignature", "G1Point", "G1Affine")
    if affine is None:
        raise IntakeError("invalid response: nil signature", field="BlsSignature")
    try:
        x = element_to_int(_limbs(affine.get("X", [0] * 4)))
        y = element_to_int(_limbs(affine.get("Y", [0] * 4)))
        signature = G1Point(x, y)
    except InvalidPoint as exc:
        raise IntakeError(f"BlsSignature: {exc}", field="BlsSignature") from None
    return signed_response_build(
        root=root, sender=sender, identifier=identifier, signature=signature, operator_id=operator_id
    )


def _limbs(value: Any) -> list[int]:
    if not isinstance(value, list) or len(value) != 4 or not all(isinstance(v, int) for v in value):
        raise InvalidPoint("a field element must be [4]uint64")
    return value


def signed_response_to_gob(response: SignedResponse) -> dict[str, Any]:
    """``response`` as the value of a SignedTaskResponse (what an operator sends its aggregator)."""
    return {
        "BatchMerkleRoot": list(bytes.fromhex(response.batch_merkle_root[2:])),
        "SenderAddress": list(bytes.fromhex(response.sender_address[2:])),
        "BatchIdentifierHash": list(bytes.fromhex(response.batch_identifier[2:])),
        "BlsSignature": {
            "G1Point": {
                "G1Affine": {
                    "X": int_to_element(response.signature.x),
                    "Y": int_to_element(response.signature.y),
                }
            }
        },
        "OperatorId": list(bytes.fromhex(response.operator_id[2:])),
    }
