"""Strict parsing of an untrusted signed task response. Every failure names the field at fault."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from bls import G1Point, InvalidPoint
from chain.abi import batch_identifier

_BYTES32 = re.compile(r"^0x[0-9a-fA-F]{64}$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
FIELDS = ("batchMerkleRoot", "senderAddress", "batchIdentifierHash", "blsSignature", "operatorId")


class IntakeError(Exception):
    """A submission refused before storage: answered with ``status`` and ``{"error", "field"}``."""

    def __init__(
        self, message: str, *, field: str | None = None, status: int = 400, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status
        self.retry_after = retry_after  # seconds, for a 429 or 503: sent as Retry-After

    def as_json(self) -> dict[str, str]:
        body = {"error": self.message}
        if self.field:
            body["field"] = self.field
        return body


@dataclass(frozen=True)
class SignedResponse:
    batch_merkle_root: str
    sender_address: str
    batch_identifier: str
    signature: G1Point
    operator_id: str


def _bytes32(document: dict[str, Any], field: str) -> str:
    value = document.get(field)
    if not isinstance(value, str):
        raise IntakeError(f"{field} must be a string of 0x and 64 hex digits", field=field)
    if not _BYTES32.match(value):
        raise IntakeError(f"{field} must be 0x followed by exactly 64 hex digits", field=field)
    return value.lower()


def signed_response_parse(raw: bytes) -> SignedResponse:
    """Parse and check what can be checked without the database."""
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise IntakeError("body is not valid JSON") from None
    if not isinstance(document, dict):
        raise IntakeError("body must be a JSON object")
    return signed_response_from_document(document)


def signed_response_from_document(document: dict[str, Any]) -> SignedResponse:
    """Check a decoded JSON signed response (the intake's and the aggregator's HTTP body)."""
    for field in FIELDS:
        if field not in document:
            raise IntakeError(f"{field} is required", field=field)
    unknown = sorted(set(document) - set(FIELDS))
    if unknown:
        raise IntakeError(f"unknown field {unknown[0]}", field=unknown[0])

    root = _bytes32(document, "batchMerkleRoot")
    sender = document["senderAddress"]
    if not isinstance(sender, str) or not _ADDRESS.match(sender):
        raise IntakeError("senderAddress must be 0x followed by exactly 40 hex digits", field="senderAddress")
    sender = sender.lower()
    identifier = _bytes32(document, "batchIdentifierHash")
    operator_id = _bytes32(document, "operatorId")
    try:
        signature = G1Point.from_hex(document["blsSignature"])
    except InvalidPoint as exc:
        raise IntakeError(f"blsSignature: {exc}", field="blsSignature") from None
    return signed_response_build(
        root=root, sender=sender, identifier=identifier, signature=signature, operator_id=operator_id
    )


def signed_response_build(
    *, root: str, sender: str, identifier: str, signature: G1Point, operator_id: str
) -> SignedResponse:
    """The checks every encoding shares (JSON here, gob in intake.wire): the identifier is
    keccak256(root ‖ sender), and the signature is not the point at infinity. Hex is lowercase 0x."""
    if identifier != batch_identifier(root, sender):
        raise IntakeError(
            "batchIdentifierHash is not keccak256(batchMerkleRoot ‖ senderAddress)",
            field="batchIdentifierHash",
        )
    if signature.is_infinity():
        raise IntakeError("blsSignature is the point at infinity", field="blsSignature")
    return SignedResponse(
        batch_merkle_root=root,
        sender_address=sender,
        batch_identifier=identifier,
        signature=signature,
        operator_id=operator_id,
    )
