"""A signature faster than the ingester waits for its batch, is matched when it arrives, or expires with a reason."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from intake.jobs import intake_sweep
from intake.models import Signature, SignatureStatus
from intake.services import signatures_expire_waiting, signatures_match_waiting
from progress.models import BatchProgress
from tests.chain_fixtures import net_deploy, signed_response


@pytest.mark.django_db
def test_it_matches_a_waiting_signature_when_its_batch_is_ingested(client, anvil):
    net = net_deploy(anvil, operators=3)
    net.ingester().sync_once()  # operators known, the batch not yet
    root = net.create_task(seed=51)
    body = signed_response(net, root=root, operator=2)
    response = client.post("/api/v1/signatures", data=json.dumps(body), content_type="application/json")
    assert response.json()["signatureStatus"] == SignatureStatus.WAITING
    assert signatures_match_waiting() == []

    net.ingester().sync_once()
    counts = intake_sweep()

    assert counts["matched"] == 1
    assert counts["verified"] == 1
    row = Signature.objects.get()
    assert row.status == SignatureStatus.VERIFIED
    progress = BatchProgress.objects.get(batch__identifier=body["batchIdentifierHash"])
    assert progress.signed_operator_ids == [body["operatorId"]]


@pytest.mark.django_db
def test_it_expires_a_signature_whose_batch_never_arrives(client, anvil, settings):
    net = net_deploy(anvil, operators=3)
    net.ingester().sync_once()
    body = signed_response(net, root=b"\x07" * 32, operator=0)  # no such task, ever
    client.post("/api/v1/signatures", data=json.dumps(body), content_type="application/json")
    settings.INTAKE_WAITING_TTL = 60
    assert signatures_expire_waiting() == 0
    assert signatures_expire_waiting(now=timezone.now() + timedelta(seconds=61)) == 1
    row = Signature.objects.get()
    assert row.status == SignatureStatus.EXPIRED
    assert "within 60 s" in row.status_reason


@pytest.mark.django_db
def test_it_matches_an_expired_signature_after_all_when_its_batch_turns_up_late(client, anvil, settings):
    """An ingester down longer than INTAKE_WAITING_TTL must not cost an acknowledged signature."""
    net = net_deploy(anvil, operators=3)
    net.ingester().sync_once()
    root = net.create_task(seed=52)  # on chain, not yet ingested
    body = signed_response(net, root=root, operator=1)
    response = client.post("/api/v1/signatures", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 202
    settings.INTAKE_WAITING_TTL = 60
    assert signatures_expire_waiting(now=timezone.now() + timedelta(seconds=61)) == 1
    assert Signature.objects.get().status == SignatureStatus.EXPIRED

    net.ingester().sync_once()  # the ingester is back
    counts = intake_sweep()

    assert counts["matched"] == 1
    row = Signature.objects.get()
    assert row.status == SignatureStatus.VERIFIED
    assert row.status_reason == ""
