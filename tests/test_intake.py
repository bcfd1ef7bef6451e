"""POST /api/v1/signatures: durable before acknowledged, idempotent, forgeries kept as evidence."""

from __future__ import annotations

import json

import pytest

from intake.models import Signature, SignatureStatus
from intake.verify import signatures_verify_batch
from tests.chain_fixtures import net_with_task, signed_response

URL = "/api/v1/signatures"


@pytest.fixture
def ingested(anvil):
    """A network with one task, ingested into the ledger."""
    return net_with_task(anvil, seed=11)


def post(client, body):
    return client.post(URL, data=json.dumps(body), content_type="application/json")


@pytest.mark.django_db
def test_it_accepts_and_stores_a_signature_before_answering(client, ingested):
    net, root = ingested
    body = signed_response(net, root=root, operator=0)
    response = post(client, body)
    assert response.status_code == 202
    data = response.json()
    assert data["status"] == "accepted"
    row = Signature.objects.get(id=data["signatureId"])
    assert row.batch_identifier == body["batchIdentifierHash"]
    assert row.operator_id == body["operatorId"]
    assert row.status == SignatureStatus.PENDING
    assert row.signature_x == "0x" + int(body["blsSignature"]["X"], 16).to_bytes(32, "big").hex()


@pytest.mark.django_db
def test_it_answers_a_retry_with_duplicate_and_changes_nothing(client, ingested):
    net, root = ingested
    body = signed_response(net, root=root, operator=1)
    first = post(client, body).json()
    second = post(client, body)
    assert second.status_code == 202
    assert second.json()["status"] == "duplicate"
    assert second.json()["signatureId"] == first["signatureId"]
    assert Signature.objects.count() == 1


@pytest.mark.django_db
def test_it_keeps_a_forged_first_submission_as_evidence_without_flagging_the_genuine_one(client, ingested):
    net, root = ingested
    genuine = signed_response(net, root=root, operator=2)
    forged = signed_response(net, root=root, operator=2, wrong_key=True)
    first = post(client, forged).json()  # posted first: must not block or displace the genuine one
    second = post(client, genuine).json()
    assert second["status"] == "accepted"
    assert second["conflicting"] is False, "a conflict needs two verified signatures"
    rows = Signature.objects.filter(operator_id=genuine["operatorId"])
    assert rows.count() == 2
    assert Signature.objects.get(id=first["signatureId"]).status == SignatureStatus.PENDING

    signatures_verify_batch(batch_identifier=genuine["batchIdentifierHash"])

    assert Signature.objects.get(id=second["signatureId"]).status == SignatureStatus.VERIFIED
    assert Signature.objects.get(id=first["signatureId"]).status == SignatureStatus.INVALID
    assert not rows.filter(conflicting=True).exists(), "the honest operator is never flagged by a forgery"


@pytest.mark.django_db
def test_it_keeps_a_signature_for_an_unknown_batch_waiting(client, ingested):
    net, _ = ingested
    later_root = net.create_task(seed=12)  # on chain, not ingested yet
    response = post(client, signed_response(net, root=later_root, operator=0))
    assert response.status_code == 202
    assert response.json()["signatureStatus"] == SignatureStatus.WAITING


@pytest.mark.django_db
def test_it_refuses_an_unknown_operator_with_403(client, ingested):
    net, root = ingested
    body = signed_response(net, root=root, operator=0)
    body["operatorId"] = "0x" + "ab" * 32
    response = post(client, body)
    assert response.status_code == 403
    assert response.json()["field"] == "operatorId"
    assert not Signature.objects.exists()
