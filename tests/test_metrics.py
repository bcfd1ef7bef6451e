"""GET /metrics: Prometheus text that parses, and moves with a real network on a real anvil node."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from alerts.models import Alert, AlertKind, AlertSeverity, WebhookDelivery, WebhookEndpoint, WebhookEvent
from intake.verify import signatures_verify_batch
from liveness.models import OperatorState
from liveness.services import operator_liveness_record
from recovery.models import RecoveryKind
from recovery.services.tasks import recovery_task_request
from tests.chain_fixtures import Net, net_deploy, signed_response

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(autouse=True)
def public_metrics(settings):
    """Scrapes here read what the metrics say; who may scrape has tests of its own."""
    settings.METRICS_PUBLIC = True


def scrape(client: Client, **headers: str) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        assert family.name.startswith("controlplane_"), family.name
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples[("controlplane_" + metric, tuple(sorted(labels.items())))]


@pytest.fixture
def network(anvil: Any, settings: Any) -> Net:
    settings.CHAIN_RPC_URL = anvil.url
    settings.METRICS_CHAIN_TIMEOUT = 0.5
    return net_deploy(anvil, operators=4)  # stakes 10, 20, 30, 40


def operator_id(net: Net, index: int) -> str:
    return str(signed_response(net, root=b"\x00" * 32, operator=index)["operatorId"])


@pytest.mark.django_db
def test_it_moves_with_the_ledger_the_chain_and_operators(client, network):
    net = network
    ingester = net.ingester()
    ingester.sync_once()
    before = scrape(client)
    assert value(before, "chain_up") == 1
    assert value(before, "batches", status="pending") == 0
    assert value(before, "operators", state="unknown") == 4
    assert value(before, "stake_online_ratio") == 1.0
    assert value(before, "quorum_threshold_ratio") == 0.67
    assert value(before, "batch_quorum_seconds_count") == 0

    root = net.create_task(seed=71)
    net.w3.provider.make_request("anvil_mine", [3])
    head = net.w3.eth.block_number
    lagging = scrape(client)
    assert value(lagging, "chain_head_block") == head
    assert value(lagging, "ingest_head_lag_blocks") == head - value(lagging, "ingest_cursor_block") > 0
    ingester.sync_once()
    pending = scrape(client)
    assert value(pending, "batches", status="pending") == 1
    assert value(pending, "ingest_head_lag_blocks") == 0

    # An operator goes down: 10 of 100 stake.
    operator_liveness_record(operator_id=operator_id(net, 0), state=OperatorState.DOWN, reason="refused")
    for i in (1, 2, 3):
        operator_liveness_record(operator_id=operator_id(net, i), state=OperatorState.UP, reason="200")
    down = scrape(client)
    assert value(down, "operators", state="down") == 1
    assert value(down, "operators", state="up") == 3
    assert value(down, "operators", state="unknown") == 0
    assert value(down, "stake_online_ratio") == pytest.approx(0.9)
    assert value(down, "stake_ratio", state="down") == pytest.approx(0.1)

    # Signatures arrive and verify: quorum (80%) is reached, then the batch is verified on chain.
    for i in (0, 3):
        body = signed_response(net, root=root, operator=i)
        response = client.post("/api/v1/signatures", data=json.dumps(body), content_type="application/json")
        assert response.status_code == 202
    assert value(scrape(client), "signatures", status="pending") == 2
    body = signed_response(net, root=root, operator=2, wrong_key=True)
    client.post("/api/v1/signatures", data=json.dumps(body), content_type="application/json")
    signatures_verify_batch(batch_identifier=str(body["batchIdentifierHash"]))
    body = signed_response(net, root=root, operator=2)
    client.post("/api/v1/signatures", data=json.dumps(body), content_type="application/json")
    signatures_verify_batch(batch_identifier=str(body["batchIdentifierHash"]))
    quorum = scrape(client)
    assert value(quorum, "signatures", status="verified") == 3
    assert value(quorum, "signatures", status="invalid") == 1
    assert value(quorum, "batch_quorum_seconds_count") == 1
    assert value(quorum, "batch_quorum_seconds_bucket", le="+Inf") == 1
    assert value(quorum, "batch_quorum_seconds_sum") >= 0

    net.respond(root=root, signers=[0, 2, 3])
    ingester.sync_once()
    verified = scrape(client)
    assert value(verified, "batches", status="verified") == 1
    assert value(verified, "batches", status="pending") == 0


@pytest.mark.django_db
def test_it_still_answers_when_the_chain_is_down(client, network):
    net = network
    net.ingester().sync_once()
    net.anvil.stop()
    samples = scrape(client)
    assert value(samples, "chain_up") == 0
    assert ("controlplane_ingest_head_lag_blocks", ()) not in samples
    assert value(samples, "ingest_cursor_block") > 0


@pytest.mark.django_db
def test_it_counts_recovery_tasks_alerts_and_webhook_deliveries(client, settings):
    settings.CHAIN_RPC_URL = "http://127.0.0.1:9"  # nothing listens: the scrape must not care
    empty = scrape(client)
    assert value(empty, "recovery_tasks", kind="replay", state="pending") == 0
    assert value(empty, "alerts_open", kind="operator_down") == 0

    recovery_task_request(kind=RecoveryKind.REPLAY, subject="0x" + "aa" * 32)
    now = timezone.now()
    alert = Alert.objects.create(
        kind=AlertKind.OPERATOR_DOWN,
        subject="0x01",
        severity=AlertSeverity.CRITICAL,
        summary="x",
        opened_at=now,
    )
    Alert.objects.create(
        kind=AlertKind.OPERATOR_DOWN,
        subject="0x02",
        severity=AlertSeverity.CRITICAL,
        summary="y",
        opened_at=now,
        state="resolved",
        resolved_at=now,
    )
    hook = WebhookEndpoint.objects.create(name="pager", url="http://127.0.0.1:9/hook")
    WebhookDelivery.objects.create(
        endpoint=hook, alert=alert, event=WebhookEvent.FIRING, next_attempt_at=now, attempts=3
    )
    WebhookDelivery.objects.filter(endpoint=hook).update(created_at=now - timedelta(seconds=90))
    samples = scrape(client)
    assert value(samples, "recovery_tasks", kind="replay", state="pending") == 1
    assert value(samples, "alerts_open", kind="operator_down") == 1
    assert value(samples, "alerts_opened_total", kind="operator_down") == 2
    labels = {"endpoint": str(hook.id), "name": "pager"}
    assert value(samples, "webhook_deliveries", status="pending", **labels) == 1
    assert value(samples, "webhook_deliveries", status="delivered", **labels) == 0
    assert value(samples, "webhook_deliveries_retrying", **labels) == 1
    assert value(samples, "webhook_oldest_pending_seconds", **labels) >= 90


@pytest.mark.django_db
def test_it_refuses_a_scrape_without_a_token_unless_made_public(client, settings):
    settings.CHAIN_RPC_URL = "http://127.0.0.1:9"
    settings.METRICS_PUBLIC = False
    settings.METRICS_TOKEN = None
    assert client.get("/metrics").status_code == 401
    settings.METRICS_PUBLIC = True
    assert client.get("/metrics").status_code == 200


@pytest.mark.django_db
def test_it_requires_the_bearer_token_when_one_is_set(client, settings):
    settings.CHAIN_RPC_URL = "http://127.0.0.1:9"
    settings.METRICS_TOKEN = "s3cret"
    settings.METRICS_PUBLIC = False
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Token s3cret"}).status_code == 401
    assert value(scrape(client, Authorization="Bearer s3cret"), "chain_up") == 0
    assert client.post("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 405


@pytest.mark.django_db
def test_it_keeps_the_scrape_to_a_few_aggregate_queries(client, settings, django_assert_max_num_queries):
    settings.CHAIN_RPC_URL = "http://127.0.0.1:9"
    now = timezone.now()
    for i in range(30):
        Alert.objects.create(
            kind=AlertKind.BATCH_AT_RISK, subject=f"0x{i:02x}", severity="warning", summary="s", opened_at=now
        )
    with django_assert_max_num_queries(12):
        scrape(client)
