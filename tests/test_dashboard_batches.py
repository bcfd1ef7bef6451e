"""The batch pages: the filterable list with a quorum bar per row, and one batch with its signers and timeline."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from dashboard.selectors import batch_snapshot_data
from intake.models import Signature, SignatureStatus
from ledger.models import Batch, IngestCursor, Operator
from liveness.models import OperatorLiveness
from progress.models import BatchProgressChange
from progress.services import batch_progress_refresh
from recovery.models import RecoveryKind, RecoveryRun, RecoveryTask
from tests.factories import CHAIN_ID, ETH, SERVICE_MANAGER, batch_create, hex32, operator_create

pytestmark = pytest.mark.django_db


def signature_create(
    *, batch: Batch, operator: Operator, status: str = SignatureStatus.VERIFIED
) -> Signature:
    return Signature.objects.create(
        batch_identifier=batch.identifier,
        batch_merkle_root=batch.merkle_root,
        sender_address=batch.sender,
        operator_id=operator.operator_id,
        signature_x=hex32(f"sx-{batch.identifier}-{operator.operator_id}-{status}"),
        signature_y=hex32(f"sy-{batch.identifier}-{operator.operator_id}-{status}"),
        status=status,
        verified_at=timezone.now() if status == SignatureStatus.VERIFIED else None,
    )


def bar(html: str, testid: str, identifier: str | None = None) -> dict[str, str]:
    """The attributes of the first progress bar with ``testid`` (in the row of ``identifier`` when given)."""
    if identifier is not None:
        html = html[html.index(f'data-batch="{identifier}"') :]
    match = re.search(rf'<div class="qbar[^"]*" role="progressbar" data-testid="{testid}"(.*?)>', html, re.S)
    assert match, f"no {testid} bar"
    return dict(re.findall(r'([\w-]+)="([^"]*)"', match.group(1)))


@pytest.fixture
def user_client(django_user_model: type[User]) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_user("viewer", password="x"))
    return client


@pytest.fixture
def network() -> dict[str, Operator]:
    """Four operators, 100 ETH: big 40 (up), mid 30 (up), small 20 (down), tiny 10 (never probed)."""
    operators = {
        "big": operator_create(label="big", stake=40 * ETH),
        "mid": operator_create(label="mid", stake=30 * ETH),
        "small": operator_create(label="small", stake=20 * ETH),
        "tiny": operator_create(label="tiny", stake=10 * ETH),
    }
    now = timezone.now()
    for name, state in (("big", "up"), ("mid", "up"), ("small", "down")):
        OperatorLiveness.objects.create(operator_id=operators[name].operator_id, state=state, since=now)
    return operators


def test_it_draws_each_rows_bar_from_verified_and_pending_stake(user_client: Client, network: dict) -> None:
    batch = batch_create(label="half", created_block=120)
    signature_create(batch=batch, operator=network["big"])
    signature_create(batch=batch, operator=network["small"], status=SignatureStatus.PENDING)
    # An invalid signature is no stake at all; a pending one next to a verified one counts once, as verified.
    signature_create(batch=batch, operator=network["tiny"], status=SignatureStatus.INVALID)
    signature_create(batch=batch, operator=network["big"], status=SignatureStatus.PENDING)
    batch_progress_refresh(batch_identifier=batch.identifier)

    html = user_client.get("/batches/").content.decode()

    attrs = bar(html, "quorum-bar", batch.identifier)
    assert attrs["data-signed-percent"] == "40.0000"
    assert attrs["data-pending-percent"] == "20.0000"
    assert attrs["data-threshold"] == "67"
    assert attrs["aria-valuenow"] == "40.0"
    assert "40.0% of stake verified, 20.0% pending, quorum at 67%" in attrs["aria-valuetext"]
    assert "40.0%" in html
    assert "+20.0%" in html


def test_it_filters_by_status_risk_stall_and_time(user_client: Client, network: dict) -> None:
    verified = batch_create(label="verified", created_block=100, verified_block=102)
    old = batch_create(label="old", created_block=110)
    risky = batch_create(label="risky", created_block=150)
    fresh = batch_create(label="fresh", created_block=158)
    # With big down too, mid's 30 signed + tiny's 10 still possible < 67: every pending batch is at risk.
    OperatorLiveness.objects.filter(operator_id=network["big"].operator_id).update(state="down")
    for b in (old, risky, fresh):
        signature_create(batch=b, operator=network["mid"])
        batch_progress_refresh(batch_identifier=b.identifier)
    assert Batch.objects.get(id=risky.id).progress.at_risk
    IngestCursor.objects.create(
        chain_id=CHAIN_ID, address=SERVICE_MANAGER, block_number=160, block_hash=hex32("block-160")
    )
    Batch.objects.filter(id=old.id).update(first_seen_at=timezone.now() - timedelta(days=2))

    def shown(query: str) -> set[str]:
        html = user_client.get("/batches/" + query).content.decode()
        return {b.identifier for b in (verified, old, risky, fresh) if f'data-batch="{b.identifier}"' in html}

    assert shown("") == {verified.identifier, old.identifier, risky.identifier, fresh.identifier}
    assert shown("?status=verified") == {verified.identifier}
    assert shown("?status=pending") == {old.identifier, risky.identifier, fresh.identifier}
    assert shown("?flag=at_risk") == {old.identifier, risky.identifier, fresh.identifier}
    # Stalled: pending and created more than ALERT_BATCH_STALLED_BLOCKS (20) before the ingested head (160).
    assert shown("?flag=stalled") == {old.identifier}
    assert shown("?range=24h") == {verified.identifier, risky.identifier, fresh.identifier}
    day_ago = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    assert shown(f"?until={day_ago}") == {old.identifier}
    assert shown(f"?since={day_ago}&status=pending") == {risky.identifier, fresh.identifier}
    # Values that mean nothing are ignored rather than failing the page.
    assert shown("?status=bogus&flag=nope&range=1y&since=yesterday") == shown("")
    assert (
        "No batch matches these filters."
        in user_client.get("/batches/?range=1h&status=orphaned").content.decode()
    )


def test_it_pages_the_list_newest_first(user_client: Client) -> None:
    batches = [batch_create(label=f"b{i}", created_block=100 + i) for i in range(55)]

    first = user_client.get("/batches/").content.decode()
    second = user_client.get("/batches/?page=2").content.decode()

    assert first.index(batches[54].identifier) < first.index(batches[5].identifier)
    assert batches[4].identifier not in first
    assert batches[4].identifier in second
    assert batches[5].identifier not in second
    assert "Page 2 of 2" in second
    assert "(55 in all)" in second


def test_it_the_list_costs_a_fixed_number_of_queries(
    user_client: Client, network: dict, django_assert_max_num_queries: object
) -> None:
    for i in range(30):
        batch = batch_create(label=f"q{i}", created_block=100 + i)
        signature_create(batch=batch, operator=network["big"])
        signature_create(batch=batch, operator=network["mid"], status=SignatureStatus.PENDING)
        batch_progress_refresh(batch_identifier=batch.identifier)

    # session, user, count, page of batches with their progress, stakes of the page: whatever the rows.
    with django_assert_max_num_queries(6):  # type: ignore[operator]
        response = user_client.get("/batches/?flag=at_risk")
    assert response.status_code == 200
    with django_assert_max_num_queries(6):  # type: ignore[operator]
        html = user_client.get("/batches/").content.decode()
    assert html.count('data-testid="quorum-bar"') == 30


def test_it_shows_one_batch_with_its_signers_non_signers_and_timeline(
    user_client: Client, network: dict
) -> None:
    batch = batch_create(label="one", created_block=120)
    signature_create(batch=batch, operator=network["big"])
    signature_create(batch=batch, operator=network["mid"])
    signature_create(batch=batch, operator=network["tiny"], status=SignatureStatus.PENDING)
    signature_create(batch=batch, operator=network["small"], status=SignatureStatus.INVALID)
    batch_progress_refresh(batch_identifier=batch.identifier)
    RecoveryTask.objects.create(
        kind=RecoveryKind.REPLAY,
        subject=batch.identifier,
        next_attempt_at=timezone.now(),
        requested_by="alice",
        reason="aggregator boot changed",
    )

    response = user_client.get(f"/batches/{batch.identifier}/")

    assert response.status_code == 200
    html = response.content.decode()
    attrs = bar(html, "quorum-progress")
    assert attrs["data-signed-percent"] == "70.0000"
    assert attrs["data-pending-percent"] == "10.0000"
    assert attrs["aria-valuenow"] == "70.0"
    assert "70.00 ETH" in html  # verified stake
    assert "100.00 ETH" in html  # total
    signers = re.findall(r'data-testid="signer-row" data-operator-id="(0x\w+)" data-status="(\w+)"', html)
    assert signers == [
        (network["big"].operator_id, "verified"),
        (network["mid"].operator_id, "verified"),
        (network["tiny"].operator_id, "pending"),
    ]
    others = re.findall(r'data-testid="non-signer-row" data-operator-id="(0x\w+)" data-state="(\w+)"', html)
    assert others == [(network["small"].operator_id, "down")]
    assert "invalid signature" in html
    assert "quorum reached" in html
    for text in (
        "Created at block 120",
        "accepted (40.00 ETH)",
        "verified",
        "invalid",
        "Quorum reached: 70.0% of stake verified (threshold 67%)",
        "requested by alice (aggregator boot changed)",
    ):
        assert text in html, text
    assert html.index("Created at block 120") < html.index("Quorum reached")


def test_it_the_batch_snapshot_matches_the_page(network: dict) -> None:
    batch = batch_create(label="snap", created_block=120)
    signature_create(batch=batch, operator=network["big"])
    signature_create(batch=batch, operator=network["mid"], status=SignatureStatus.PENDING)
    batch_progress_refresh(batch_identifier=batch.identifier)

    data = batch_snapshot_data(identifier=batch.identifier)

    assert data is not None
    assert data["identifier"] == batch.identifier
    assert data["status"] == "pending"
    assert (data["total_stake"], data["signed_stake"], data["pending_stake"]) == (
        str(100 * ETH),
        str(40 * ETH),
        str(30 * ETH),
    )
    assert (data["signed_percent"], data["pending_percent"], data["threshold_percentage"]) == (40.0, 30.0, 67)
    assert data["quorum_reached_at"] is None
    assert data["verified_at"] is None
    assert data["signers"][0] == {
        "operator_id": network["big"].operator_id,
        "stake": str(40 * ETH),
        "status": "verified",
    }
    assert {n["operator_id"]: n["state"] for n in data["non_signers"]} == {
        network["small"].operator_id: "down",
        network["tiny"].operator_id: "unknown",
    }
    assert data["timeline"][0]["kind"] == "batch.created"
    assert batch_snapshot_data(identifier=hex32("nope")) is None


def test_it_answers_404_for_unknown_and_malformed_identifiers(user_client: Client) -> None:
    batch = batch_create(label="known")

    assert user_client.get(f"/batches/{hex32('unknown')}/").status_code == 404
    assert user_client.get("/batches/0x1234/").status_code == 404
    assert user_client.get("/batches/" + "0x" + "zz" * 32 + "/").status_code == 404
    assert user_client.get(f"/batches/{batch.identifier.upper().replace('0X', '0x')}/").status_code == 200


def test_it_records_quorum_and_verification_in_the_timeline(user_client: Client, network: dict) -> None:
    batch = batch_create(label="done", created_block=120, verified_block=125)
    signature_create(batch=batch, operator=network["big"])
    signature_create(batch=batch, operator=network["mid"])
    batch_progress_refresh(batch_identifier=batch.identifier)
    RecoveryRun.objects.create(
        kind=RecoveryKind.REPLAY,
        scope="all-pending",
        requested_by="bob",
        dry_run=True,
        plan={"batches": [{"identifier": batch.identifier}], "skipped": []},
        outcome="dry run: 1 batch would be replayed",
    )

    html = user_client.get(f"/batches/{batch.identifier}/").content.decode()

    assert BatchProgressChange.objects.filter(batch_identifier=batch.identifier).exists()
    assert "verified on chain at block 125" in html
    assert "Dry run #" in html
    assert "by bob (all-pending): dry run: 1 batch would be replayed" in html
    assert 'data-testid="batch-status">Verified<' in html


def test_it_sums_up_a_flood_of_forgeries_per_operator_at_a_fixed_cost(
    user_client: Client, network: dict, django_assert_max_num_queries: object
) -> None:
    batch = batch_create(label="flooded", created_block=130)
    signature_create(batch=batch, operator=network["big"])
    Signature.objects.bulk_create(
        Signature(
            batch_identifier=batch.identifier,
            batch_merkle_root=batch.merkle_root,
            sender_address=batch.sender,
            operator_id=network["mid"].operator_id,
            signature_x=hex32(f"forged-x-{n}"),
            signature_y=hex32(f"forged-y-{n}"),
            status=SignatureStatus.INVALID,
            status_reason="BLS signature does not verify against the operator's key",
            source=f"198.51.100.{n % 5}",
            verified_at=timezone.now(),
        )
        for n in range(300)
    )
    batch_progress_refresh(batch_identifier=batch.identifier)

    with django_assert_max_num_queries(16):  # type: ignore[operator]
        html = user_client.get(f"/batches/{batch.identifier}/").content.decode()

    assert html.count("in 0x") == 1, "one timeline line for the whole flood"
    assert "300 signatures in" in html
    assert "from 5 addresses invalid" in html


def test_it_shows_the_standby_buttons_to_staff_and_its_answer_in_the_timeline(
    user_client: Client, django_user_model: type[User], network: dict
) -> None:
    batch = batch_create(label="standby", created_block=130)
    assert (
        'data-recovery-action="respond"'
        not in user_client.get(f"/batches/{batch.identifier}/").content.decode()
    )
    staff = Client()
    staff.force_login(django_user_model.objects.create_user("ops", password="x", is_staff=True))
    html = staff.get(f"/batches/{batch.identifier}/").content.decode()
    assert 'data-recovery-action="respond"' in html
    assert 'data-respond-url="/api/v1/recovery/responses"' in html
    RecoveryTask.objects.create(
        kind=RecoveryKind.RESPOND,
        subject=batch.identifier,
        status="done",
        next_attempt_at=timezone.now(),
        finished_at=timezone.now(),
        reason="the aggregator is unreachable",
        result={"answered_by": "standby", "tx_hash": hex32("tx")},
    )
    html = user_client.get(f"/batches/{batch.identifier}/").content.decode()
    assert "Answered by the standby: standby response #" in html
    assert hex32("tx") in html
