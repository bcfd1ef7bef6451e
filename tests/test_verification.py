"""Micro-batch verification per batch and across batches: one aggregated check, bisection to the bad ones, chain
agrees."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bls import G1_GENERATOR, G1Point, g1_add, g1_mul, g1_neg, keypair_from_secret
from devnet import contracts
from devnet.nonsigners import respond_with_signatures
from intake.management.commands.verifier import GATHER_SECONDS, MAX_GATHER_SECONDS, gather_after
from intake.models import Signature, SignatureStatus
from intake.verify import signatures_verify_batch, signatures_verify_batches
from liveness.models import OperatorLiveness
from progress.models import BatchProgress
from recovery.models import RecoveryKind, RecoveryTask
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
    # Forwarding is requested in the transaction that verified them: one task for the batch and pass, named after
    # its first verified signature.
    from recovery.models import RecoveryKind, RecoveryTask

    first = min(Signature.objects.filter(status=SignatureStatus.VERIFIED).values_list("id", flat=True))
    identifier = Signature.objects.get(id=first).batch_identifier
    assert list(RecoveryTask.objects.filter(kind=RecoveryKind.FORWARD).values_list("subject", flat=True)) == [
        f"{identifier}:{first}"
    ]
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


# --- one pass over several batches -----------------------------------------------------------------


def several_batches(client, anvil, *, operators: int, batches: int, forged=frozenset()) -> list[str]:
    """``batches`` ingested tasks, each signed by every operator; (batch, operator) in ``forged`` by a wrong key."""
    net = net_deploy(anvil, operators=operators)
    roots = [net.create_task(seed=40 + b) for b in range(batches)]
    net.ingester().sync_once()
    identifiers = []
    for b, root in enumerate(roots):
        for i in range(operators):
            body = signed_response(net, root=root, operator=i, wrong_key=(b, i) in forged)
            submit(client, body)
        identifiers.append(body["batchIdentifierHash"])
    return identifiers


def statuses(identifier: str) -> list[str]:
    return list(
        Signature.objects.filter(batch_identifier=identifier).order_by("id").values_list("status", flat=True)
    )


@pytest.mark.django_db
def test_it_verifies_many_batches_with_one_pairing_check(client, anvil, settings):
    settings.BLS_PAIRING_BACKEND = "py-ecc"
    identifiers = several_batches(client, anvil, operators=3, batches=4)

    with CaptureQueriesContext(connection) as queries:
        outcomes = signatures_verify_batches(batch_identifiers=identifiers)

    assert [(o.batch_identifier, o.verified, o.invalid) for o in outcomes] == [(i, 3, 0) for i in identifiers]
    assert {o.pairing_checks for o in outcomes} == {1}, "one pairing check for the whole pass"
    assert Signature.objects.filter(status=SignatureStatus.VERIFIED).count() == 12
    assert set(BatchProgress.objects.values_list("batch__identifier", flat=True)) == set(identifiers)
    assert RecoveryTask.objects.filter(kind=RecoveryKind.FORWARD).count() == 4, "one forward per batch"
    claims = [q["sql"] for q in queries.captured_queries if "FOR UPDATE SKIP LOCKED" in q["sql"]]
    assert len(claims) == 1, "every batch's chunk is claimed in one query"
    # The pass: claim, keys, one status update, down operators (+ savepoint). Per batch: conflicts and
    # progress (13 the first time) and its forward request (3). Per operator: a first sign of life (9). Nothing
    # per signature.
    assert len(queries) <= 6 + 16 * len(identifiers) + 9 * 3, len(queries)


@pytest.mark.django_db
def test_it_marks_only_the_forged_signature_of_several_batches_invalid(client, anvil, settings):
    settings.BLS_PAIRING_BACKEND = "py-ecc"
    identifiers = several_batches(client, anvil, operators=3, batches=3, forged=frozenset({(1, 2)}))

    outcomes = signatures_verify_batches(batch_identifiers=identifiers)

    assert [(o.verified, o.invalid) for o in outcomes] == [(3, 0), (2, 1), (3, 0)]
    assert statuses(identifiers[1]) == ["verified", "verified", "invalid"]
    assert statuses(identifiers[0]) == statuses(identifiers[2]) == ["verified"] * 3
    # Top check, grouped by key: [key 0] passes, so [keys 1, 2] fails unchecked; [key 1] passes, so [key 2]
    # fails unchecked; within it [b0] passes, so [b1, b2] fails unchecked; [b1] fails; [b2] passes.
    assert outcomes[0].pairing_checks == 6


@pytest.mark.django_db
def test_it_catches_forgeries_of_two_batches_that_cancel_in_the_plain_sum(client, anvil):
    net = net_deploy(anvil, operators=2)
    roots = [net.create_task(seed=50), net.create_task(seed=51)]
    net.ingester().sync_once()
    delta = g1_mul(G1_GENERATOR, 424242)
    forged_ids = []
    for b, root in enumerate(roots):
        for i in range(2):
            body = signed_response(net, root=root, operator=i)
            if i == 1:
                shift = delta if b == 0 else g1_neg(delta)
                body["blsSignature"] = g1_add(G1Point.from_hex(body["blsSignature"]), shift).to_hex()
                forged_ids.append(submit(client, body))
            else:
                submit(client, body)
    identifiers = sorted(set(Signature.objects.values_list("batch_identifier", flat=True)))

    outcomes = signatures_verify_batches(batch_identifiers=identifiers)

    assert [(o.verified, o.invalid) for o in outcomes] == [(1, 1), (1, 1)]
    assert set(Signature.objects.filter(status=SignatureStatus.INVALID).values_list("id", flat=True)) == set(
        forged_ids
    )


@pytest.mark.django_db
def test_it_keeps_the_per_batch_chunk_and_the_pass_bound(client, anvil, settings):
    settings.VERIFY_CHUNK = 2
    settings.VERIFY_PASS_BATCHES = 2
    identifiers = several_batches(client, anvil, operators=3, batches=3)

    outcomes = signatures_verify_batches(batch_identifiers=identifiers)

    assert [o.verified for o in outcomes] == [2, 2, 2], "at most VERIFY_CHUNK of each batch, oldest first"
    assert [statuses(i) for i in identifiers] == [["verified", "verified", "pending"]] * 3
    # Two passes (two batches, then one), one pairing check each.
    assert [o.pairing_checks for o in outcomes] == [1, 1, 1]
    again = signatures_verify_batches(batch_identifiers=identifiers)
    assert [o.verified for o in again] == [1, 1, 1]


def test_it_gathers_notifications_longer_after_a_long_pass_within_a_bound() -> None:
    # Idle or quick passes: a burst becomes one pass within milliseconds.
    assert gather_after(last_pass=0.0, last_batches=0) == GATHER_SECONDS
    assert gather_after(last_pass=0.005, last_batches=3) == GATHER_SECONDS
    # Under load, as long as the last pass took: the next one covers what arrived meanwhile and more.
    assert gather_after(last_pass=0.12, last_batches=12) == 0.12
    # Never longer than the bound, however slow a pass was.
    assert gather_after(last_pass=3.0, last_batches=64) == MAX_GATHER_SECONDS
    # A long pass over one batch (a flood of forgeries for it) gains nothing from waiting: its quorum would wait.
    assert gather_after(last_pass=0.2, last_batches=1) == GATHER_SECONDS
