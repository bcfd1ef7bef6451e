"""Micro-batch verification per batch: one aggregated check, bisection to the bad ones, chain agrees."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User

from bls import G1Point, keypair_from_secret
from devnet import contracts
from devnet.nonsigners import respond_with_signatures
from intake.models import Signature, SignatureStatus
from intake.verify import signatures_verify_batch
from liveness.models import OperatorLiveness
from tests.chain_fixtures import net_deploy, signed_response


def submit(client, body) -> int:
    response = client.post("/api/v1/signatures", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 202, response.content
    return int(response.json()["signatureId"])


@pytest.mark.django_db
def test_it_marks_exactly_the_invalid_signatures_by_bisection(client, anvil):
    net = net_deploy(anvil, operators=8)
    root = net.create_task(seed=21)
    net.ingester().sync_once()
    bad = {2, 5}
    ids = {
        i: submit(client, signed_response(net, root=root, operator=i, wrong_key=i in bad)) for i in range(8)
    }

    outcome = signatures_verify_batch(
        batch_identifier=Signature.objects.get(
            id=min(Signature.objects.values_list("id", flat=True))
        ).batch_identifier
    )

    assert outcome.verified == 6
    assert outcome.invalid == 2
    assert outcome.pairing_checks < 2 * len(bad) * 3 + 1, "bisection, not one check per signature pair"
    for i, signature_id in ids.items():
        row = Signature.objects.get(id=signature_id)
        assert row.status == (SignatureStatus.INVALID if i in bad else SignatureStatus.VERIFIED)
        assert row.verified_at is not None
        if i in bad:
            assert "does not verify" in row.status_reason


@pytest.mark.django_db
def test_it_verifies_all_valid_signatures_with_one_pairing_check(client, anvil):
    net = net_deploy(anvil, operators=5)
    root = net.create_task(seed=22)
    net.ingester().sync_once()
    for i in range(5):
        submit(client, signed_response(net, root=root, operator=i))
    outcome = signatures_verify_batch(
        batch_identifier=Signature.objects.get(
            id=min(Signature.objects.values_list("id", flat=True))
        ).batch_identifier
    )
    assert (outcome.verified, outcome.invalid, outcome.pairing_checks) == (5, 0, 1)
    # Forwarding is requested in the transaction that verified them: one task per verified signature.
    from recovery.models import RecoveryKind, RecoveryTask

    verified_ids = {
        str(i) for i in Signature.objects.filter(status=SignatureStatus.VERIFIED).values_list("id", flat=True)
    }
    assert (
        set(RecoveryTask.objects.filter(kind=RecoveryKind.FORWARD).values_list("subject", flat=True))
        == verified_ids
    )
    again = signatures_verify_batch(
        batch_identifier=Signature.objects.get(
            id=min(Signature.objects.values_list("id", flat=True))
        ).batch_identifier
    )
    assert (again.verified, again.invalid) == (0, 0), "verified rows are not claimed twice"


@pytest.mark.django_db
def test_it_lets_the_chain_accept_the_aggregate_of_the_verified_signatures(client, anvil):
    net = net_deploy(anvil, operators=4)
    root = net.create_task(seed=23)
    net.ingester().sync_once()
    for i in range(4):
        submit(client, signed_response(net, root=root, operator=i, wrong_key=i == 0))
    signatures_verify_batch(
        batch_identifier=Signature.objects.get(
            id=min(Signature.objects.values_list("id", flat=True))
        ).batch_identifier
    )

    verified = list(Signature.objects.filter(status=SignatureStatus.VERIFIED).order_by("operator_id"))
    assert len(verified) == 3
    keys = {
        "0x" + keypair_from_secret(int(op["bls_secret"], 16)).operator_id.hex(): keypair_from_secret(
            int(op["bls_secret"], 16)
        )
        for op in net.state["operators"]
    }
    receipt = respond_with_signatures(
        net.w3,
        service_manager=net.service_manager,
        registry=net.registry,
        retriever=net.state["contracts"]["operator_state_retriever"],
        aggregator=net.account("aggregator"),
        batch_merkle_root=root,
        sender=net.account("batcher").address.lower(),
        signatures={
            bytes.fromhex(s.operator_id[2:]): G1Point(int(s.signature_x, 16), int(s.signature_y, 16))
            for s in verified
        },
        signer_keys_g2={
            bytes.fromhex(s.operator_id[2:]): keys[s.operator_id].public_key_g2 for s in verified
        },
    )
    events = contracts.decode_events(net.w3, receipt)
    assert [e.name for e in events] == ["BatchVerified"]


@pytest.mark.django_db
def test_it_counts_only_a_verified_signature_as_a_sign_of_life(client, anvil):
    """Anyone can post in an operator's name: a post that does not verify says nothing about the operator."""
    net = net_deploy(anvil, operators=3)
    root = net.create_task(seed=24)
    net.ingester().sync_once()
    for i in range(3):
        submit(client, signed_response(net, root=root, operator=i, wrong_key=i == 1))
    forged_in_name_of = net.state["operators"][1]["operator_id"]
    honest = net.state["operators"][0]["operator_id"]
    assert not OperatorLiveness.objects.exists(), "an accepted post changes no operator's state"

    signatures_verify_batch(batch_identifier=Signature.objects.order_by("id").first().batch_identifier)  # type: ignore[union-attr]

    client.force_login(User.objects.create_user("viewer"))
    detail = client.get(f"/api/v1/operators/{forged_in_name_of}/").json()
    assert detail["signatures"]["invalid"] == 1
    assert detail["signatures"]["verified"] == 0
    assert detail["liveness"]["state"] == "unknown", "a forgery is no sign of life"
    good = client.get(f"/api/v1/operators/{honest}/").json()
    assert good["signatures"]["verified"] == 1
    assert good["liveness"]["state"] == "up", "a verified signature is"
