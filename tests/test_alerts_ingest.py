"""Ingest alerts against a real anvil chain: lag, stopped (stuck cursor, silent node, another chain), deep reorg."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from alerts.models import Alert, AlertKind, AlertSeverity, AlertState, WebhookEndpoint
from alerts.services import EvaluationResult, alerts_evaluate
from devnet.anvil import Anvil, start_anvil
from ledger.ingest.ledger import ledger_reset
from ledger.ingest.sync import DeepReorgError
from tests.chain_fixtures import Net, net_deploy
from tests.test_alerts_rules import assert_quiet, sent

pytestmark = pytest.mark.django_db

INGEST_KINDS = [AlertKind.INGEST_LAG, AlertKind.INGEST_STOPPED, AlertKind.DEEP_REORG]


@pytest.fixture
def net(anvil: Anvil, settings: Any, tmp_path: Any) -> Net:
    settings.DEVNET_FILE = tmp_path / "devnet.json"
    settings.CHAIN_RPC_URL = anvil.url
    settings.AGGREGATOR_URL = None
    settings.INGEST_CONFIRMATIONS = 0
    settings.ALERT_INGEST_LAG_BLOCKS = 5
    settings.ALERT_INGEST_STOPPED_SECONDS = 60
    settings.ALERT_CHAIN_TIMEOUT = 0.5
    WebhookEndpoint.objects.create(name="ops", url="http://127.0.0.1:9/hook")
    return net_deploy(anvil)


def evaluate(at: Any) -> EvaluationResult:
    return alerts_evaluate(kinds=INGEST_KINDS, now=at)


def kinds(alerts: list[Alert]) -> list[str]:
    return sorted(str(a.kind) for a in alerts)


def test_it_opens_lag_at_once_and_stopped_after_the_cursor_stood_n_seconds_then_resolves_both(
    net: Net, django_capture_on_commit_callbacks: Any
) -> None:
    ingester = net.ingester()
    ingester.sync_once()
    t0 = timezone.now()
    assert evaluate(t0).opened == []

    net.anvil.rpc("anvil_mine", ["0xa"])  # ten confirmed blocks the ingester has not seen
    result = evaluate(t0)
    assert kinds(result.opened) == [AlertKind.INGEST_LAG]
    lag = result.opened[0]
    assert lag.details["behind"][net.service_manager] == 10
    assert "10 blocks behind" in lag.summary
    assert_quiet(AlertKind.INGEST_STOPPED, django_capture_on_commit_callbacks, now=t0 + timedelta(seconds=30))

    result = evaluate(t0 + timedelta(seconds=61))
    assert kinds(result.opened) == [AlertKind.INGEST_STOPPED]
    stopped = result.opened[0]
    assert stopped.severity == AlertSeverity.CRITICAL
    assert "has stood at block" in stopped.summary
    assert_quiet(AlertKind.INGEST_LAG, django_capture_on_commit_callbacks, now=t0 + timedelta(seconds=70))
    assert_quiet(AlertKind.INGEST_STOPPED, django_capture_on_commit_callbacks, now=t0 + timedelta(seconds=70))

    ingester.sync_once()
    result = evaluate(t0 + timedelta(seconds=71))
    assert sorted(a.id for a in result.resolved) == sorted([lag.id, stopped.id])
    assert Alert.objects.get(id=lag.id).resolution == "ingest caught up: 0 confirmed blocks behind"
    assert Alert.objects.get(id=stopped.id).resolution == "ingest follows the chain again"
    assert sent(Alert.objects.get(id=stopped.id)) == ["firing", "resolved"]
    assert_quiet(AlertKind.INGEST_STOPPED, django_capture_on_commit_callbacks, now=t0 + timedelta(seconds=80))


def test_it_does_not_call_an_idle_chain_stopped_when_a_block_finally_comes(net: Net) -> None:
    net.ingester().sync_once()
    t0 = timezone.now()
    assert evaluate(t0).opened == []  # caught up; then nothing happens for ten minutes
    net.anvil.rpc("anvil_mine", ["0x1"])
    assert evaluate(t0 + timedelta(minutes=10)).opened == [], "standing behind has only just begun"


def test_it_opens_stopped_when_the_node_stays_silent_and_keeps_lag_as_it_was(net: Net) -> None:
    net.ingester().sync_once()
    net.anvil.rpc("anvil_mine", ["0xa"])
    t0 = timezone.now()
    assert kinds(evaluate(t0).opened) == [AlertKind.INGEST_LAG]

    net.anvil.stop()
    result = evaluate(t0 + timedelta(seconds=1))
    assert (result.opened, result.resolved) == ([], [])
    assert sorted(result.unknown) == sorted([AlertKind.INGEST_LAG, AlertKind.INGEST_STOPPED])
    result = evaluate(t0 + timedelta(seconds=62))
    assert kinds(result.opened) == [AlertKind.INGEST_STOPPED]
    assert "the chain node has not answered for 61 s" in result.opened[0].summary
    assert Alert.objects.get(kind=AlertKind.INGEST_LAG).state == AlertState.OPEN, "unknown is not resolved"


def test_it_opens_deep_reorg_and_stopped_until_the_ledger_is_reset(
    net: Net, django_capture_on_commit_callbacks: Any
) -> None:
    net.create_task(seed=6)
    net.anvil.rpc("anvil_mine", ["0x20"])
    ingester = net.ingester(blocks_kept=4)
    ingester.sync_once()
    net.anvil.rpc("anvil_reorg", [10, []])
    with pytest.raises(DeepReorgError):
        ingester.sync_once()

    t0 = timezone.now()
    result = evaluate(t0)
    assert kinds(result.opened) == [AlertKind.DEEP_REORG, AlertKind.INGEST_STOPPED]
    reorg = Alert.objects.get(kind=AlertKind.DEEP_REORG)
    assert (reorg.subject, reorg.severity) == (net.service_manager, AlertSeverity.CRITICAL)
    assert "deep reorg stranded" in Alert.objects.get(kind=AlertKind.INGEST_STOPPED).summary
    with pytest.raises(DeepReorgError):  # the ingester restarts and fails again: still one alert each
        net.ingester(blocks_kept=4).sync_once()
    for kind in INGEST_KINDS:
        assert_quiet(kind, django_capture_on_commit_callbacks, now=t0 + timedelta(seconds=5))

    # The reset itself resolves what was said of the old ledger (receivers hear so), and nothing comes back.
    ledger_reset(chain_id=31337, reason="test: operator checked the chain")
    assert not Alert.objects.filter(state=AlertState.OPEN).exists()
    assert (
        Alert.objects.get(id=reorg.id).resolution == "the ledger was reset: test: operator checked the chain"
    )
    net.ingester(blocks_kept=4).sync_once()
    result = evaluate(t0 + timedelta(seconds=10))
    assert result.opened == []


def test_it_opens_stopped_at_once_when_the_node_serves_another_chain(net: Net, settings: Any) -> None:
    net.ingester().sync_once()
    replacement = start_anvil(extra_args=["--timestamp", str(int(time.time()) + 1000)])
    try:
        settings.CHAIN_RPC_URL = replacement.url  # a restarted devnet: same chain id, another genesis
        result = evaluate(timezone.now())
        assert kinds(result.opened) == [AlertKind.INGEST_STOPPED]
        assert "the node serves another chain" in result.opened[0].summary
        assert "ingest --reset" in result.opened[0].summary

        ledger_reset(chain_id=31337, reason="test: new devnet")
        assert Alert.objects.get(kind=AlertKind.INGEST_STOPPED).state == AlertState.RESOLVED
        other = net_deploy(replacement, seed="other")
        other.ingester().sync_once()
        result = evaluate(timezone.now())
        assert result.opened == []
    finally:
        replacement.stop()
