"""The evaluator as a whole: exactly once under concurrency, the command and its lock, acknowledgement, lists."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from alerts.conditions import Condition
from alerts.management.commands.alerts import ALERTS_LOCK
from alerts.models import Alert, AlertKind, AlertSeverity, AlertState, WebhookDelivery, WebhookEndpoint
from alerts.selectors import alert_get, alert_list, alert_open_counts, alerts_open
from alerts.services import EvaluationResult, alert_acknowledge, alert_open, alerts_evaluate
from controlplane.locks import advisory_lock
from ledger.models import Operator
from liveness.models import OperatorState
from tests.factories import ETH, operator_create
from tests.test_alerts_rules import set_state

KINDS = [AlertKind.QUORUM_IMPOSSIBLE, AlertKind.OPERATOR_DOWN]


@pytest.fixture(autouse=True)
def nothing_outside(settings: Any, tmp_path: Any) -> None:
    settings.DEVNET_FILE = tmp_path / "devnet.json"
    settings.CHAIN_RPC_URL = None
    settings.AGGREGATOR_URL = None


def four_operators() -> list[Operator]:
    return [operator_create(label=f"op{i}", stake=(i + 1) * 10 * ETH) for i in range(4)]


def concurrently(n: int) -> list[EvaluationResult]:
    """``n`` evaluations released at the same instant, each on its own connection."""
    barrier = threading.Barrier(n)
    results: list[EvaluationResult] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(alerts_evaluate(kinds=KINDS))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results


@pytest.mark.django_db(transaction=True)
def test_it_never_opens_or_resolves_one_alert_twice_under_concurrent_evaluations() -> None:
    WebhookEndpoint.objects.create(name="ops", url="http://127.0.0.1:9/hook")
    operators = four_operators()
    for round_ in range(3):
        set_state(operators[2], OperatorState.DOWN)
        set_state(operators[3], OperatorState.DOWN)  # 30% online: quorum impossible, two operators down
        results = concurrently(4)
        assert sum(len(r.opened) for r in results) == 3, f"round {round_}: one opening per alert"
        assert Alert.objects.filter(state=AlertState.OPEN).count() == 3

        set_state(operators[2], OperatorState.UP)
        set_state(operators[3], OperatorState.UP)
        results = concurrently(4)
        assert sum(len(r.resolved) for r in results) == 3, f"round {round_}: one resolution per alert"
        assert not Alert.objects.filter(state=AlertState.OPEN).exists()

    assert Alert.objects.count() == 9
    events = list(WebhookDelivery.objects.values_list("alert_id", "event"))
    assert len(events) == len(set(events)) == 18, "one firing and one resolved delivery per alert"


@pytest.mark.django_db
def test_it_refuses_to_open_a_second_alert_for_an_open_kind_and_subject() -> None:
    condition = Condition(
        kind=AlertKind.OPERATOR_DOWN, subject="0xabc", severity=AlertSeverity.WARNING, summary="down"
    )
    first = alert_open(condition=condition)
    assert first is not None
    assert alert_open(condition=condition) is None
    assert Alert.objects.count() == 1


@pytest.mark.django_db
def test_it_evaluates_once_from_the_command_and_prints_a_line_per_change() -> None:
    operators = four_operators()
    set_state(operators[0], OperatorState.DOWN)  # 10% of stake: a warning, quorum still possible
    out = StringIO()
    call_command("alerts", "--once", stdout=out)
    alert = Alert.objects.get(kind=AlertKind.OPERATOR_DOWN)
    lines = out.getvalue().splitlines()
    assert lines[0] == f"alerts: opened #{alert.id} warning operator_down: {alert.summary}"
    assert lines[-1].startswith("alerts: 1 opened, 0 resolved, 0 still open, 0 webhook deliveries enqueued")
    assert "could not evaluate ingest_lag, ingest_stopped" in lines[-1], "no chain configured here"

    out = StringIO()
    call_command("alerts", "--once", stdout=out)
    assert out.getvalue().splitlines()[0].startswith("alerts: 0 opened, 0 resolved, 1 still open")

    set_state(operators[0], OperatorState.UP)
    out = StringIO()
    call_command("alerts", "--once", stdout=out)
    assert (
        out.getvalue().splitlines()[0]
        == f"alerts: resolved #{alert.id} operator_down: the operator is up again"
    )


@pytest.mark.django_db
def test_it_leaves_evaluation_to_the_replica_that_holds_the_lock() -> None:
    set_state(four_operators()[3], OperatorState.DOWN)
    with advisory_lock(ALERTS_LOCK), pytest.raises(CommandError, match="held by another process"):
        call_command("alerts", "--once", stdout=StringIO())
    assert not Alert.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_it_runs_as_a_loop_with_one_active_replica_and_stops_on_sigterm(tmp_path: Any) -> None:
    set_state(four_operators()[0], OperatorState.DOWN)
    db = django_settings.DATABASES["default"]
    env = {
        **os.environ,
        "SECRET_KEY": "test",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": django_settings.REDIS_URL,
        "DEVNET_FILE": str(tmp_path / "devnet.json"),
        "AGGREGATOR_URL": "http://127.0.0.1:9",
        # Only the operator's alert is in play: on a loaded machine the standby's start-up alone can outlast the
        # default 30 s after which the unreachable aggregator would rightly get an alert of its own.
        "ALERT_AGGREGATOR_UNREACHABLE_SECONDS": "3600",
        "ALERTS_INTERVAL": "0.2",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("CHAIN_RPC_URL", None)
    manage = [sys.executable, str(django_settings.BASE_DIR / "manage.py"), "alerts"]
    active = subprocess.Popen(manage, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    standby: subprocess.Popen[str] | None = None
    try:
        assert active.stdout is not None
        assert active.stdout.readline().strip() == "alerts: evaluating every 0.2s"
        assert active.stdout.readline().startswith("alerts: opened #")
        standby = subprocess.Popen(
            manage, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert standby.stdout is not None
        assert "standing by: lock 'alerts' is held by another replica" in standby.stdout.readline()
        time.sleep(1.0)  # several intervals: the active one keeps evaluating, nothing opens twice
        assert Alert.objects.count() == 1
        active.send_signal(signal.SIGTERM)
        rest, _ = active.communicate(timeout=60)
        assert active.returncode == 0
        assert rest.strip().splitlines()[-1] == "alerts: stopped"
        assert "opened" not in rest, "nothing is re-sent while nothing changes"

        # The standby takes over within its lock poll (2 s).
        assert standby.stdout.readline().strip() == "alerts: evaluating every 0.2s"
        standby.send_signal(signal.SIGTERM)
        rest, _ = standby.communicate(timeout=60)
        assert standby.returncode == 0
        assert "opened" not in rest
    finally:
        for process in (active, standby):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.communicate(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()  # never left running against the next test's database
                    process.communicate()
    assert Alert.objects.count() == 1


@pytest.mark.django_db
def test_it_keeps_the_first_acknowledgement() -> None:
    alert = alert_open(
        condition=Condition(
            kind=AlertKind.QUORUM_IMPOSSIBLE, subject="", severity=AlertSeverity.CRITICAL, summary="x"
        )
    )
    assert alert is not None
    first = alert_acknowledge(alert=alert, user="alice")
    assert first.acknowledged_by == "alice"
    assert first.acknowledged_at is not None
    again = alert_acknowledge(alert=alert_get(alert_id=alert.id) or alert, user="bob")
    assert (again.acknowledged_by, again.acknowledged_at) == ("alice", first.acknowledged_at)


@pytest.mark.django_db
def test_it_lists_alerts_by_state_kind_severity_and_since() -> None:
    now = timezone.now()

    def make(kind: AlertKind, subject: str, severity: AlertSeverity, *, ago: int) -> Alert:
        condition = Condition(kind=kind, subject=subject, severity=severity, summary=subject)
        opened = alert_open(condition=condition, now=now - timedelta(minutes=ago))
        assert opened is not None
        return opened

    old_info = make(AlertKind.AGGREGATOR_RESTARTED, "boot", AlertSeverity.INFO, ago=60)
    warning = make(AlertKind.OPERATOR_DOWN, "0x1", AlertSeverity.WARNING, ago=10)
    critical = make(AlertKind.OPERATOR_DOWN, "0x2", AlertSeverity.CRITICAL, ago=20)
    Alert.objects.filter(id=old_info.id).update(state=AlertState.RESOLVED, resolved_at=now)

    assert list(alert_list()) == [warning, critical, old_info]
    assert list(alert_list(state=AlertState.OPEN)) == [warning, critical]
    assert list(alert_list(kind=AlertKind.OPERATOR_DOWN, severity=AlertSeverity.CRITICAL)) == [critical]
    assert list(alert_list(since=now - timedelta(minutes=15))) == [warning]
    assert list(alerts_open()) == [critical, warning], "most severe first"
    assert alert_open_counts() == {AlertKind.OPERATOR_DOWN: 2}
    assert alert_get(alert_id=10**9) is None
