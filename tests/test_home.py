from __future__ import annotations

import pytest
from django.test import Client

from monitoring.models import IngestCursor, IngestIncident, IngestIncidentKind
from tests.factories import CHAIN_ID, ETH, SERVICE_MANAGER, batch_create, hex32, operator_create

pytestmark = pytest.mark.django_db


def test_it_renders_the_batches_operators_and_ingest_state_that_exist(client: Client) -> None:
    pending = batch_create(label="pending", created_block=120)
    verified = batch_create(label="verified", created_block=110, verified_block=115)
    big = operator_create(label="big", stake=30 * ETH, socket="http://127.0.0.1:7001")
    small = operator_create(label="small", stake=10 * ETH)
    IngestCursor.objects.create(
        chain_id=CHAIN_ID, address=SERVICE_MANAGER, block_number=118, block_hash=hex32("block-118")
    )
    IngestIncident.objects.create(
        chain_id=CHAIN_ID,
        kind=IngestIncidentKind.REORG,
        block_number=117,
        depth=2,
        detail="parent hash changed",
    )

    response = client.get("/")

    assert response.status_code == 200
    html = response.content.decode()
    assert '<meta http-equiv="refresh" content="5">' in html
    assert pending.identifier[:8] in html
    assert pending.identifier in html  # in the link and title
    assert verified.identifier in html
    assert html.index(pending.identifier) < html.index(verified.identifier)  # newest first
    assert ">115<" in html  # verified block
    assert "status-verified" in html
    assert "status-pending" in html
    assert big.address in html
    assert small.address in html
    assert "30.00" in html
    assert "10.00" in html
    assert "75.00 %" in html
    assert "25.00 %" in html
    assert "http://127.0.0.1:7001" in html
    assert SERVICE_MANAGER in html
    assert ">118<" in html
    assert "parent hash changed" in html
    assert "(depth 2)" in html


def test_it_shows_only_the_latest_twenty_batches(client: Client) -> None:
    batches = [batch_create(label=f"b{i}", created_block=100 + i) for i in range(21)]

    html = client.get("/").content.decode()

    assert batches[-1].identifier in html
    assert batches[1].identifier in html
    assert batches[0].identifier not in html


def test_it_renders_an_empty_ledger(client: Client) -> None:
    response = client.get("/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "No batch ingested yet." in html
    assert "No operator registered yet." in html
    assert "No ingest incident." in html
