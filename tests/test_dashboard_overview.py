"""The overview page at /: stake online, batch counts, ingest lag, aggregator, recovery, alerts, latest batches."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from alerts.models import Alert
from dashboard.overview_selectors import overview_snapshot_data
from ledger.models import Block, IngestCursor, IngestIncident, IngestIncidentKind, Operator
from liveness.models import OperatorLiveness
from progress.services import batch_progress_refresh
from recovery.models import AggregatorBoot, RecoveryKind, RecoveryStatus, RecoveryTask
from tests.factories import CHAIN_ID, ETH, REGISTRY, SERVICE_MANAGER, batch_create, hex32, operator_create

pytestmark = pytest.mark.django_db


def stat(html: str, testid: str) -> str:
    match = re.search(rf'data-testid="{testid}"[^>]*>([^<]*)<', html)
    assert match, testid
    return match.group(1).strip()


@pytest.fixture
def user_client(django_user_model: type[User]) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_user("viewer", password="x"))
    return client


@pytest.fixture
def ledger() -> dict[str, object]:
    now = timezone.now()
    up = operator_create(label="up", stake=40 * ETH)
    degraded = operator_create(label="degraded", stake=15 * ETH)
    down = operator_create(label="down", stake=35 * ETH)
    operator_create(label="unprobed", stake=10 * ETH)
    # Deregistered: its last stake update says 50 ETH, but it holds no share of anything any more.
    gone = operator_create(label="gone", registered=False)
    Operator.objects.filter(id=gone.id).update(current_stake=50 * ETH)
    for operator, state in ((up, "up"), (degraded, "degraded"), (down, "down")):
        OperatorLiveness.objects.create(operator_id=operator.operator_id, state=state, since=now)
    stalled = batch_create(label="stalled", created_block=100)
    at_risk = batch_create(label="at-risk", created_block=150)
    batch_create(label="pending", created_block=155)
    batch_create(label="verified", created_block=90, verified_block=95)
    batch_progress_refresh(batch_identifier=at_risk.identifier)
    batch_progress_refresh(batch_identifier=stalled.identifier)
    # Two contracts: the slower one is the ingested head; the highest block header seen is the chain head.
    IngestCursor.objects.create(
        chain_id=CHAIN_ID, address=SERVICE_MANAGER, block_number=160, block_hash=hex32("a")
    )
    IngestCursor.objects.create(chain_id=CHAIN_ID, address=REGISTRY, block_number=158, block_hash=hex32("b"))
    Block.objects.create(chain_id=CHAIN_ID, number=163, hash=hex32("h163"), parent_hash=hex32("h162"))
    IngestIncident.objects.create(
        chain_id=CHAIN_ID,
        kind=IngestIncidentKind.REORG,
        block_number=157,
        depth=2,
        detail="parent hash changed",
    )
    AggregatorBoot.objects.create(boot_id="9f86d081884c7d65", url="http://127.0.0.1:8090")
    for i, status in enumerate((RecoveryStatus.PENDING, RecoveryStatus.PENDING, RecoveryStatus.RUNNING)):
        RecoveryTask.objects.create(
            kind=RecoveryKind.FORWARD, subject=str(i), status=status, next_attempt_at=now
        )
    RecoveryTask.objects.create(
        kind=RecoveryKind.REPLAY, subject=at_risk.identifier, status=RecoveryStatus.DONE, next_attempt_at=now
    )
    Alert.objects.create(
        kind="operator_down",
        subject=down.operator_id,
        severity="critical",
        summary="operator 0x… is down, holding 35.0% of the stake",
        opened_at=now - timedelta(minutes=3),
    )
    Alert.objects.create(
        kind="ingest_lag",
        severity="warning",
        state="resolved",
        summary="ingest was 40 blocks behind",
        opened_at=now - timedelta(hours=2),
        resolved_at=now - timedelta(hours=1),
    )
    return {"up": up, "down": down, "stalled": stalled, "at_risk": at_risk}


def test_it_shows_the_network_at_a_glance(user_client: Client, ledger: dict) -> None:
    response = user_client.get("/")

    assert response.status_code == 200
    html = response.content.decode()
    # Up and degraded hold 55 of the 100 registered ETH (the deregistered 50 do not count).
    assert re.search(r'data-snap="stake_online_percent" data-format="pct">55.0%<', html)
    assert re.search(r'data-snap="operators.down">1<', html)
    assert re.search(r'data-snap="operators.unknown">1<', html)
    assert stat(html, "stat-batches-pending") == "3"
    assert stat(html, "stat-batches-verified") == "1"
    # Up 40 + degraded 15 + never probed 10 of 100 cannot make 67 without the down one: both refreshed at risk.
    assert stat(html, "stat-batches-at-risk") == "2"
    # Stalled: pending and created more than 20 blocks before the ingested head (158).
    assert stat(html, "stat-batches-stalled") == "1"
    assert re.search(r'data-snap="ingest.lag_blocks" data-format="int">5<', html)  # 163 - 158
    assert "last incident: reorg at block 157 (depth 2)" in html
    assert 'title="parent hash changed"' in html
    assert "9f86d081" in html
    assert re.search(r'data-snap="recovery.running">1<', html)
    assert re.search(r'data-snap="recovery.pending">2<', html)
    assert re.search(r'data-snap="alerts_open" data-warn class="warn">1<', html)
    # Open alerts first, then resolved ones.
    assert html.index("holding 35.0% of the stake") < html.index("ingest was 40 blocks behind")
    assert 'data-testid="live-indicator"' in html
    assert 'data-live-path="ws/quorum/"' in html


def test_it_lists_the_latest_ten_batches_newest_first_with_their_bars(user_client: Client) -> None:
    batches = [batch_create(label=f"b{i}", created_block=100 + i) for i in range(11)]

    html = user_client.get("/").content.decode()

    assert html.index(batches[10].identifier) < html.index(batches[1].identifier)
    assert batches[0].identifier not in html
    assert html.count('data-testid="quorum-bar"') == 10


def test_it_the_snapshot_has_the_fields_the_socket_promises(ledger: dict) -> None:
    data = overview_snapshot_data()

    assert data["stake_online_percent"] == 55.0
    assert data["operators"] == {"up": 1, "degraded": 1, "down": 1, "unknown": 1}
    assert data["batches"] == {"pending": 3, "verified": 1, "at_risk": 2, "stalled": 1}
    assert data["ingest"] == {"cursor_block": 158, "head_block": 163, "lag_blocks": 5}
    assert data["aggregator"]["boot_id"] == "9f86d081884c7d65"
    assert data["recovery"] == {"pending": 2, "running": 1}
    assert data["alerts_open"] == 1
    assert set(data["recent_batches"][0]) == {
        "identifier",
        "status",
        "created_block",
        "signed_percent",
        "pending_percent",
        "at_risk",
        "quorum_reached",
    }
    states = {o["operator_id"]: o["state"] for o in data["operators_state"]}
    assert states[ledger["down"].operator_id] == "down"
    assert len(states) == 4  # registered only


def test_it_renders_an_empty_ledger(user_client: Client) -> None:
    response = user_client.get("/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "No batch ingested yet." in html
    assert "No operator registered yet." in html
    assert "No alert has been raised." in html
    assert "not seen yet" in html  # the aggregator
    assert re.search(r'data-snap="stake_online_percent" data-format="pct">—<', html)


def test_it_the_overview_costs_a_fixed_number_of_queries(
    user_client: Client, ledger: dict, django_assert_max_num_queries: object
) -> None:
    for i in range(20):
        batch_create(label=f"more{i}", created_block=200 + i)

    # One more than before the counts kept by the writes: verified batches are read from them, not scanned.
    with django_assert_max_num_queries(17):  # type: ignore[operator]
        assert user_client.get("/").status_code == 200
