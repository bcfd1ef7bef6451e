"""Aggregator alerts against the real devnet aggregator on a real chain: unreachable for N seconds, restarted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from alerts.models import Alert, AlertKind, AlertSeverity, AlertState, AlertWatch, WebhookEndpoint
from alerts.observe import AGGREGATOR_KEY
from alerts.services import alerts_evaluate
from devnet.aggregator import AggregatorNode
from devnet.anvil import Anvil
from recovery.management.commands.recovery import recovery_pass
from recovery.models import OPEN_STATUSES, AggregatorBoot, RecoveryKind, RecoveryStatus, RecoveryTask
from tests.chain_fixtures import Net, net_deploy
from tests.test_alerts_rules import assert_quiet, sent

pytestmark = pytest.mark.django_db


@pytest.fixture
def network(anvil: Anvil, settings: Any, tmp_path: Any) -> Iterator[tuple[Net, list[AggregatorNode]]]:
    """A deployed network and its aggregator; replacements appended to the list are stopped too."""
    settings.DEVNET_FILE = tmp_path / "devnet.json"
    settings.CHAIN_RPC_URL = None
    settings.INGEST_CONFIRMATIONS = 0
    settings.AGGREGATOR_TIMEOUT = 1.0
    settings.ALERT_AGGREGATOR_UNREACHABLE_SECONDS = 30
    WebhookEndpoint.objects.create(name="ops", url="http://127.0.0.1:9/hook")
    net = net_deploy(anvil, operators=4)
    node = AggregatorNode(state=net.state)
    node.start()
    settings.AGGREGATOR_URL = node.url
    nodes = [node]
    yield net, nodes
    for each in nodes:
        each.stop()


def test_it_opens_aggregator_unreachable_after_n_seconds_and_resolves_when_it_answers(
    network: tuple[Net, list[AggregatorNode]], django_capture_on_commit_callbacks: Any
) -> None:
    net, nodes = network
    kind = AlertKind.AGGREGATOR_UNREACHABLE
    t0 = timezone.now()
    assert alerts_evaluate(kinds=[kind], now=t0).opened == []

    nodes[0].stop()
    assert alerts_evaluate(kinds=[kind], now=t0 + timedelta(seconds=1)).opened == []
    assert alerts_evaluate(kinds=[kind], now=t0 + timedelta(seconds=30)).opened == [], "29 s is not yet 30"
    # The start of the outage is in Postgres: another replica (a fresh evaluation) measures from it too.
    assert AlertWatch.objects.get(key=AGGREGATOR_KEY).since == t0 + timedelta(seconds=1)
    result = alerts_evaluate(kinds=[kind], now=t0 + timedelta(seconds=31))
    assert len(result.opened) == 1
    alert = result.opened[0]
    assert (alert.subject, alert.severity) == ("", AlertSeverity.CRITICAL)
    assert "for 30 s" in alert.summary
    assert_quiet(kind, django_capture_on_commit_callbacks, now=t0 + timedelta(seconds=60))

    replacement = AggregatorNode(state=net.state)
    replacement.start()
    nodes.append(replacement)
    result = alerts_evaluate(kinds=[kind], now=t0 + timedelta(seconds=61))
    assert [a.id for a in result.resolved] == [alert.id]
    assert result.resolved[0].resolution == "the aggregator answers its health check again"
    assert sent(result.resolved[0]) == ["firing", "resolved"]


def drive_replays(timeout: float = 20.0) -> None:
    """Run recovery passes (tasks in-process) until no replay is open."""
    deadline = time.monotonic() + timeout
    while RecoveryTask.objects.filter(kind=RecoveryKind.REPLAY, status__in=OPEN_STATUSES).exists():
        assert time.monotonic() < deadline, list(RecoveryTask.objects.values("kind", "status", "last_error"))
        RecoveryTask.objects.filter(status=RecoveryStatus.PENDING).update(next_attempt_at=timezone.now())
        recovery_pass(execute=True)


def test_it_opens_aggregator_restarted_on_a_new_boot_and_resolves_when_its_replays_are_done(
    network: tuple[Net, list[AggregatorNode]], django_capture_on_commit_callbacks: Any
) -> None:
    net, nodes = network
    kind = AlertKind.AGGREGATOR_RESTARTED
    net.create_task(seed=71)
    net.ingester().sync_once()
    recovery_pass()  # the control plane sees the first boot: no restart yet
    drive_replays()
    assert alerts_evaluate(kinds=[kind]).opened == []

    nodes[0].stop()  # a crash: its partial signatures are gone
    replacement = AggregatorNode(state=net.state)
    replacement.start()
    nodes.append(replacement)
    recovery_pass()  # sees the new boot id and requests a replay of the pending batch
    assert AggregatorBoot.objects.count() == 2

    result = alerts_evaluate(kinds=[kind])
    assert [a.subject for a in result.opened] == [replacement.boot_id]
    alert = result.opened[0]
    assert alert.severity == AlertSeverity.WARNING
    assert alert.details["previous_boot_id"] == nodes[0].boot_id
    assert alert.details["replays_open"] == 1
    assert_quiet(kind, django_capture_on_commit_callbacks)

    drive_replays()
    result = alerts_evaluate(kinds=[kind])
    assert [a.id for a in result.resolved] == [alert.id]
    assert result.resolved[0].resolution == "every replay to the new aggregator is done"
    assert_quiet(kind, django_capture_on_commit_callbacks)
    assert Alert.objects.get(id=alert.id).state == AlertState.RESOLVED


def test_it_tells_a_restart_with_nothing_to_replay_once(
    network: tuple[Net, list[AggregatorNode]], django_capture_on_commit_callbacks: Any
) -> None:
    net, nodes = network
    kind = AlertKind.AGGREGATOR_RESTARTED
    recovery_pass()
    nodes[0].stop()
    replacement = AggregatorNode(state=net.state)
    replacement.start()
    nodes.append(replacement)
    recovery_pass()

    opened = alerts_evaluate(kinds=[kind]).opened
    assert [(a.subject, a.severity) for a in opened] == [(replacement.boot_id, AlertSeverity.INFO)]
    assert [a.id for a in alerts_evaluate(kinds=[kind]).resolved] == [opened[0].id]
    assert_quiet(kind, django_capture_on_commit_callbacks)
