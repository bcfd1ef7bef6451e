"""The alerts API: list (filters, pagination), detail, and acknowledgement by staff."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from alerts.models import Alert, AlertKind, AlertSeverity, AlertState
from controlplane.auth import api_token_create
from controlplane.models import TokenScope

pytestmark = pytest.mark.django_db

ALERTS = "/api/v1/alerts/"
NOW = timezone.now().replace(microsecond=0)


@pytest.fixture(autouse=True)
def _fresh_throttle_counts() -> None:
    # Throttle counts live in Redis, keyed by user id, and outlast a test database: start from zero.
    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter("*throttle_write_*"):
        client.delete(key)


def token_client(user: User, scope: str) -> Client:
    _, key = api_token_create(user=user, name=scope, scope=scope, created_by="tests")
    return Client(headers={"authorization": f"Token {key}"})


@pytest.fixture
def reader() -> Client:
    return token_client(User.objects.create_user(username="viewer"), TokenScope.READ)


@pytest.fixture
def writer() -> Client:
    return token_client(User.objects.create_user(username="ops", is_staff=True), TokenScope.WRITE)


def alert_create(
    *,
    kind: str = AlertKind.OPERATOR_DOWN,
    severity: str = AlertSeverity.WARNING,
    opened_at: datetime = NOW,
    resolved: bool = False,
    subject: str = "",
) -> Alert:
    return Alert.objects.create(
        kind=kind,
        subject=subject or f"0x{Alert.objects.count():064x}",
        severity=severity,
        summary=f"{kind} summary",
        details={"stake_share": "0.25"},
        opened_at=opened_at,
        state=AlertState.RESOLVED if resolved else AlertState.OPEN,
        resolved_at=opened_at + timedelta(minutes=1) if resolved else None,
        resolution="cause gone" if resolved else "",
    )


def ids(client: Client, query: str = "") -> list[int]:
    response = client.get(f"{ALERTS}?{query}")
    assert response.status_code == 200, response.content
    return [a["id"] for a in response.json()["results"]]


def test_it_lists_alerts_newest_first_with_every_field(reader: Client) -> None:
    old = alert_create(opened_at=NOW - timedelta(hours=2), resolved=True)
    new = alert_create(kind=AlertKind.QUORUM_IMPOSSIBLE, severity=AlertSeverity.CRITICAL)

    body = reader.get(ALERTS).json()

    assert body["count"] == 2
    assert [a["id"] for a in body["results"]] == [new.id, old.id]
    resolved = body["results"][1]
    assert resolved == {
        "id": old.id,
        "kind": "operator_down",
        "subject": old.subject,
        "severity": "warning",
        "state": "resolved",
        "summary": "operator_down summary",
        "details": {"stake_share": "0.25"},
        "opened_at": (NOW - timedelta(hours=2)).isoformat().replace("+00:00", "Z"),
        "resolved_at": (NOW - timedelta(hours=2, minutes=-1)).isoformat().replace("+00:00", "Z"),
        "resolution": "cause gone",
        "acknowledged_at": None,
        "acknowledged_by": "",
    }


def test_it_filters_by_state_kind_severity_and_since(reader: Client) -> None:
    old_down = alert_create(opened_at=NOW - timedelta(days=1), resolved=True)
    down = alert_create(opened_at=NOW - timedelta(minutes=5))
    quorum = alert_create(kind=AlertKind.QUORUM_IMPOSSIBLE, severity=AlertSeverity.CRITICAL)
    lag = alert_create(kind=AlertKind.INGEST_LAG, severity=AlertSeverity.WARNING, resolved=True)

    assert ids(reader, "state=open") == [quorum.id, down.id]
    assert ids(reader, "state=resolved") == [lag.id, old_down.id]
    assert ids(reader, "kind=operator_down") == [down.id, old_down.id]
    assert ids(reader, "severity=critical") == [quorum.id]
    since = (NOW - timedelta(hours=1)).isoformat()
    assert ids(reader, f"since={since.replace('+', '%2B')}") == [lag.id, quorum.id, down.id]
    assert ids(reader, f"since={(NOW - timedelta(minutes=5)).strftime('%Y-%m-%dT%H:%M:%SZ')}") == [
        lag.id,
        quorum.id,
        down.id,
    ], "since is inclusive"
    assert ids(reader, "state=open&kind=operator_down&severity=warning") == [down.id]
    assert ids(reader, "kind=deep_reorg") == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("state=closed", "state"),
        ("kind=fire", "kind"),
        ("severity=high", "severity"),
        ("since=today", "since"),
    ],
)
def test_it_answers_400_naming_a_malformed_filter(reader: Client, query: str, field: str) -> None:
    response = reader.get(f"{ALERTS}?{query}")

    assert response.status_code == 400
    assert response.json()["field"] == field
    assert response.json()["error"].startswith(f"{field}: ")


def test_it_paginates_alerts(reader: Client) -> None:
    size = int(str(settings.REST_FRAMEWORK["PAGE_SIZE"]))
    for i in range(size + 1):
        alert_create(opened_at=NOW - timedelta(seconds=i))

    first = reader.get(ALERTS).json()
    second = reader.get(f"{ALERTS}?page=2&state=open").json()

    assert len(first["results"]) == size
    assert first["next"].endswith("/api/v1/alerts/?page=2")
    assert len(second["results"]) == 1
    assert reader.get(f"{ALERTS}?page=3").json() == {"error": "page 3 does not exist", "field": "page"}


def test_it_returns_one_alert_or_404(reader: Client) -> None:
    alert = alert_create()

    assert reader.get(f"{ALERTS}{alert.id}/").json()["id"] == alert.id
    missing = reader.get(f"{ALERTS}{alert.id + 1000}/")
    assert missing.status_code == 404
    assert missing.json() == {"error": "no alert with this id", "field": "id"}
    assert reader.get(f"{ALERTS}{10**30}/").status_code == 404, "beyond bigint is simply absent"


@pytest.mark.parametrize("suffix", ["acknowledge", "acknowledge/"])
def test_it_acknowledging_is_idempotent_and_keeps_the_first(writer: Client, suffix: str) -> None:
    alert = alert_create()
    other_staff = User.objects.create_user(username="ops-2", is_staff=True)

    first = writer.post(f"{ALERTS}{alert.id}/{suffix}")
    again = writer.post(f"{ALERTS}{alert.id}/{suffix}")
    by_other = token_client(other_staff, TokenScope.WRITE).post(f"{ALERTS}{alert.id}/{suffix}")

    assert first.status_code == 200
    body: dict[str, Any] = first.json()
    assert body["acknowledged_by"] == "ops"
    assert body["acknowledged_at"] is not None
    assert body["state"] == "open", "acknowledging does not resolve"
    assert again.status_code == 200
    assert again.json() == body
    assert by_other.json()["acknowledged_by"] == "ops"
    alert.refresh_from_db()
    assert alert.acknowledged_by == "ops"


def test_it_acknowledging_an_unknown_alert_is_404(writer: Client) -> None:
    response = writer.post(f"{ALERTS}424242/acknowledge")

    assert response.status_code == 404
    assert response.json() == {"error": "no alert with this id", "field": "id"}
