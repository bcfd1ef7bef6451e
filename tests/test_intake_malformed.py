"""Malformed input gets a 4xx naming the problem; nothing ever produces a 500."""

from __future__ import annotations

import json

import pytest

from bls import FIELD_MODULUS
from intake.models import Signature

URL = "/api/v1/signatures"
GOOD = {
    "batchMerkleRoot": "0x" + "11" * 32,
    "senderAddress": "0x" + "22" * 20,
    "batchIdentifierHash": "0x5a1f8e3b0e7ad0e8a1c8c7b2b2d1a83a1d1d55c6c2ad7a7d08f6f5e0c0d13a0e",
    "blsSignature": {"X": "0x1", "Y": "0x2"},
    "operatorId": "0x" + "33" * 32,
}


def _good() -> dict:
    from eth_utils import keccak

    body = json.loads(json.dumps(GOOD))
    body["batchIdentifierHash"] = "0x" + keccak(bytes.fromhex("11" * 32) + bytes.fromhex("22" * 20)).hex()
    return body


def _with(**changes: object) -> bytes:
    body = _good()
    for key, value in changes.items():
        if value is ...:
            del body[key]
        else:
            body[key] = value
    return json.dumps(body).encode()


CASES = [
    ("not json", b"{nope", 400, None),
    ("array", b"[]", 400, None),
    ("truncated root", _with(batchMerkleRoot="0x" + "11" * 31), 400, "batchMerkleRoot"),
    ("root not hex", _with(batchMerkleRoot="0x" + "zz" * 32), 400, "batchMerkleRoot"),
    ("root as number", _with(batchMerkleRoot=12345), 400, "batchMerkleRoot"),
    ("short sender", _with(senderAddress="0x1234"), 400, "senderAddress"),
    ("wrong identifier", _with(batchIdentifierHash="0x" + "44" * 32), 400, "batchIdentifierHash"),
    ("missing signature", _with(blsSignature=...), 400, "blsSignature"),
    ("signature as string", _with(blsSignature="0x1234"), 400, "blsSignature"),
    ("off-curve signature", _with(blsSignature={"X": "0x1", "Y": "0x3"}), 400, "blsSignature"),
    ("huge coordinate", _with(blsSignature={"X": hex(FIELD_MODULUS + 1), "Y": "0x2"}), 400, "blsSignature"),
    ("huge number", _with(blsSignature={"X": "0x" + "f" * 200, "Y": "0x2"}), 400, "blsSignature"),
    ("infinity signature", _with(blsSignature={"X": "0x0", "Y": "0x0"}), 400, "blsSignature"),
    ("missing operator", _with(operatorId=...), 400, "operatorId"),
    ("operator as list", _with(operatorId=["0x00"]), 400, "operatorId"),
    ("extra field", _with(extra=1), 400, "extra"),
    ("unknown operator", _with(), 403, "operatorId"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "body", "status", "field"), CASES, ids=[c[0] for c in CASES])
def test_it_answers_malformed_input_with_a_clear_4xx(client, name, body, status, field):
    response = client.post(URL, data=body, content_type="application/json")
    assert response.status_code == status, response.content
    payload = response.json()
    assert payload["error"]
    if field:
        assert payload["field"] == field
    assert not Signature.objects.exists()


@pytest.mark.django_db
def test_it_refuses_an_oversized_body_with_413(client, settings):
    settings.INTAKE_MAX_BODY_BYTES = 1024
    body = _with(batchDataPointer="x" * 5000)
    response = client.post(URL, data=body, content_type="application/json")
    assert response.status_code == 413
    assert "larger than 1024 bytes" in response.json()["error"]


@pytest.mark.django_db
def test_it_allows_only_post(client):
    assert client.get(URL).status_code == 405
