"""Webhooks against real HTTP receivers on 127.0.0.1, with real RQ jobs (a worker in burst mode) over Redis."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import django_rq
import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client
from django.utils import timezone
from rq import SimpleWorker

from alerts.models import (
    Alert,
    AlertKind,
    AlertSeverity,
    AlertState,
    WebhookAttempt,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookEvent,
)
from alerts.payload import ZERO_TIME, labels_fingerprint, webhook_payload
from alerts.webhooks import (
    NO_SECRET,
    PostResult,
    backoff_seconds,
    webhook_deliveries_reconcile,
    webhook_deliveries_request,
    webhook_delivery_claim,
    webhook_delivery_settle,
    webhook_signature_verify,
)

SECRET = "test-webhook-secret"
OPERATOR = "0x" + "ab" * 32
BATCH = "0x" + "cd" * 32


@dataclass
class Post:
    status: int
    event: str
    delivery: str
    timestamp: str
    signature: str
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


class Receiver:
    """A webhook receiver: answers ``status`` (200 or 500), or refuses connections while stopped."""

    def __init__(self) -> None:
        self.status = 200
        self.posts: list[Post] = []
        self.port = 0
        self.server: ThreadingHTTPServer | None = None
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def accepted(self) -> list[Post]:
        with self.lock:
            return [post for post in self.posts if 200 <= post.status < 300]

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.status
                with receiver.lock:
                    receiver.posts.append(
                        Post(
                            status=status,
                            event=self.headers["X-Controlplane-Event"],
                            delivery=self.headers["X-Controlplane-Delivery"],
                            timestamp=self.headers["X-Controlplane-Timestamp"],
                            signature=self.headers["X-Controlplane-Signature"],
                            body=body,
                        )
                    )
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        # The same port after a restart, like a receiver coming back at its registered URL.
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for receiver in started:
        receiver.stop()


def receiver_start(receivers: list[Receiver]) -> Receiver:
    receiver = Receiver()
    receiver.start()
    receivers.append(receiver)
    return receiver


@pytest.fixture(autouse=True)
def webhook_settings(settings: Any) -> Any:
    settings.WEBHOOK_SECRET = SECRET
    settings.WEBHOOK_TIMEOUT = 1.0
    settings.WEBHOOK_BACKOFF_CAP = 0.2
    settings.PUBLIC_URL = "https://cp.example.org"
    return settings


@pytest.fixture(autouse=True)
def queue() -> Iterator[Any]:
    q = django_rq.get_queue("default")
    q.connection.flushdb()
    yield q
    q.connection.flushdb()


def work(queue: Any) -> None:
    """Run every queued job for real, in this process (burst mode; no fork, so it shares the test database)."""
    SimpleWorker([queue], connection=queue.connection).work(burst=True)


def endpoint(receiver: Receiver, name: str = "ops") -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(name=name, url=receiver.url, created_by="staff")


def alert_open(kind: str = AlertKind.OPERATOR_DOWN, subject: str = OPERATOR) -> Alert:
    with transaction.atomic():
        alert = Alert.objects.create(
            kind=kind,
            subject=subject,
            severity=AlertSeverity.CRITICAL,
            summary=f"{kind} {subject[:10]}",
            details={"stake_share": "0.4", "operator_id": subject} if kind == AlertKind.OPERATOR_DOWN else {},
            opened_at=timezone.now(),
        )
        webhook_deliveries_request(alert=alert, event=WebhookEvent.FIRING)
    return alert


def alert_resolve(alert: Alert, resolution: str = "cause gone") -> None:
    with transaction.atomic():
        Alert.objects.filter(id=alert.id).update(
            state=AlertState.RESOLVED, resolved_at=timezone.now(), resolution=resolution
        )
        alert.refresh_from_db()
        webhook_deliveries_request(alert=alert, event=WebhookEvent.RESOLVED)


def drive(queue: Any, until: Any, *, timeout: float = 15.0) -> None:
    """Alerts-loop passes: reconcile (re-enqueue what is due), then let the worker run the jobs."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "deliveries did not complete in time"
        webhook_deliveries_reconcile()
        work(queue)
        time.sleep(0.05)


def alert_id_of(post: Post) -> str:
    return str(post.json["alerts"][0]["annotations"]["alert_id"])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.django_db(transaction=True)
def test_it_posts_one_signed_firing_and_one_resolved_per_alert(queue, receivers):
    receiver = receiver_start(receivers)
    endpoint(receiver)
    down = alert_open()
    stalled = alert_open(kind=AlertKind.BATCH_STALLED, subject=BATCH)
    assert queue.count == 2, "one job per delivery, enqueued on commit"
    work(queue)
    alert_resolve(down)
    alert_resolve(stalled)
    work(queue)
    # Asking again is a no-op: nothing new is owed, nothing is sent again.
    assert webhook_deliveries_request(alert=down, event=WebhookEvent.FIRING) == 0
    assert webhook_deliveries_request(alert=down, event=WebhookEvent.RESOLVED) == 0
    webhook_deliveries_reconcile()
    work(queue)

    posts = receiver.posts
    assert len(posts) == 4
    for post in posts:
        assert webhook_signature_verify(
            secret=SECRET, timestamp=post.timestamp, body=post.body, signature=post.signature
        )
        assert not webhook_signature_verify(
            secret="another", timestamp=post.timestamp, body=post.body, signature=post.signature
        )
    by_alert = {
        alert.id: [
            (p.event, p.json["status"])
            for p in posts
            if p.json["alerts"][0]["annotations"]["alert_id"] == str(alert.id)
        ]
        for alert in (down, stalled)
    }
    assert by_alert == {a.id: [("firing", "firing"), ("resolved", "resolved")] for a in (down, stalled)}
    firing, resolved = [p.json for p in posts if p.json["groupLabels"]["subject"] == OPERATOR]
    assert firing["version"] == "4"
    assert firing["receiver"] == "ops"
    assert firing["truncatedAlerts"] == 0
    assert firing["externalURL"] == "https://cp.example.org"
    assert firing["groupKey"] == f'{{}}:{{alertname="operator_down", subject="{OPERATOR}"}}'
    (item,) = firing["alerts"]
    assert item["labels"] == {
        "alertname": "operator_down",
        "severity": "critical",
        "subject": OPERATOR,
        "operator": OPERATOR,
    }
    assert item["endsAt"] == ZERO_TIME
    assert item["startsAt"].endswith("Z")
    assert item["generatorURL"] == f"https://cp.example.org/operators/{OPERATOR}/"
    assert item["annotations"]["summary"] == down.summary
    assert "stake_share=0.4" in item["annotations"]["description"]
    assert firing["commonLabels"] == item["labels"]
    assert resolved["alerts"][0]["endsAt"] != ZERO_TIME
    assert resolved["alerts"][0]["fingerprint"] == item["fingerprint"]
    assert resolved["groupKey"] == firing["groupKey"]
    stalled_item = next(p.json for p in posts if p.json["groupLabels"]["subject"] == BATCH)["alerts"][0]
    assert stalled_item["labels"]["batch"] == BATCH
    assert stalled_item["generatorURL"] == f"https://cp.example.org/batches/{BATCH}/"
    assert WebhookDelivery.objects.filter(status=WebhookDeliveryStatus.DELIVERED).count() == 4
    assert WebhookAttempt.objects.count() == 4


def test_it_fingerprints_labels_as_alertmanager_does():
    # prometheus/common model: labelSetToFingerprint of these labels is 5799056148416392346; {} is the FNV offset.
    assert (
        labels_fingerprint(labels={"name": "garland, briggs", "fear": "love is not enough"})
        == "507a62d79ee76c9a"
    )
    assert labels_fingerprint(labels={}) == "cbf29ce484222325"


@pytest.mark.django_db(transaction=True)
def test_it_delivers_everything_once_in_order_after_the_receiver_was_down(queue, receivers):
    receiver = receiver_start(receivers)
    endpoint(receiver)
    receiver.stop()  # refusing connections
    alerts = [alert_open(subject="0x" + f"{i:02x}" * 32) for i in range(3)]
    work(queue)
    for alert in alerts[:2]:
        alert_resolve(alert)
    for _ in range(3):
        time.sleep(0.25)
        webhook_deliveries_reconcile()
        work(queue)
    failing = WebhookDelivery.objects.filter(event=WebhookEvent.FIRING)
    assert all(d.status == WebhookDeliveryStatus.PENDING and d.attempts >= 2 for d in failing)
    assert failing[0].last_error == "connection refused"
    # A resolution is never sent before its firing reached the endpoint.
    assert not WebhookAttempt.objects.filter(delivery__event=WebhookEvent.RESOLVED).exists()

    receiver.status = 500
    receiver.start()  # back on the same port, but failing
    for _ in range(3):
        time.sleep(0.25)
        webhook_deliveries_reconcile()
        work(queue)
    assert receiver.posts
    assert not receiver.accepted
    assert {p.event for p in receiver.posts} == {"firing"}
    assert WebhookDelivery.objects.filter(last_status_code=500).exists()

    receiver.status = 200
    drive(queue, lambda: not WebhookDelivery.objects.filter(status=WebhookDeliveryStatus.PENDING).exists())

    accepted = [(alert_id_of(p), p.event) for p in receiver.accepted]
    assert len(accepted) == len(set(accepted)) == 5, "each event exactly once"
    for alert in alerts[:2]:
        assert [e for a, e in accepted if a == str(alert.id)] == ["firing", "resolved"]
    assert [e for a, e in accepted if a == str(alerts[2].id)] == ["firing"]
    delivery = WebhookDelivery.objects.get(alert=alerts[0], event=WebhookEvent.FIRING)
    log = list(delivery.log.order_by("id").values_list("status_code", "error"))
    assert log[0][0] is None
    assert log[0][1] == "connection refused"
    assert (500, "HTTP 500") in log, "the status only: a receiver's words are never stored"
    assert log[-1] == (200, "")
    assert delivery.attempts == len(log)


@pytest.mark.django_db(transaction=True)
def test_it_never_lets_one_endpoint_down_delay_another(queue, receivers, settings):
    healthy = receiver_start(receivers)
    endpoint(healthy, name="healthy")
    WebhookEndpoint.objects.create(name="gone", url=f"http://127.0.0.1:{free_port()}/hook")
    alerts = [alert_open(subject="0x" + f"{i:02x}" * 32) for i in range(3)]
    work(queue)
    assert len(healthy.accepted) == 3, "all delivered in the first pass despite the dead endpoint"
    gone = WebhookDelivery.objects.filter(endpoint__name="gone")
    assert gone.count() == 3
    assert all(d.status == WebhookDeliveryStatus.PENDING and d.attempts == 1 for d in gone)
    for alert in alerts:
        alert_resolve(alert)
    work(queue)
    assert [p.event for p in healthy.accepted] == ["firing"] * 3 + ["resolved"] * 3


@pytest.mark.django_db(transaction=True)
def test_it_loses_nothing_when_redis_is_flushed(queue, receivers):
    receiver = receiver_start(receivers)
    endpoint(receiver)
    alert = alert_open()
    assert queue.count == 1
    queue.connection.flushdb()  # Redis lost everything
    assert queue.count == 0
    work(queue)
    assert receiver.posts == []
    assert webhook_deliveries_reconcile() == 1
    work(queue)
    assert [p.event for p in receiver.accepted] == ["firing"]
    assert WebhookDelivery.objects.get(alert=alert).status == WebhookDeliveryStatus.DELIVERED
    assert webhook_deliveries_reconcile() == 0


@pytest.mark.django_db(transaction=True)
def test_it_sends_nothing_unsigned_and_retries_once_a_secret_is_set(queue, receivers, settings):
    settings.WEBHOOK_SECRET = None
    receiver = receiver_start(receivers)
    endpoint(receiver)
    alert_open()
    work(queue)
    assert receiver.posts == []
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDeliveryStatus.PENDING
    assert delivery.last_error == NO_SECRET
    assert delivery.next_attempt_at > delivery.created_at
    assert list(delivery.log.values_list("error", flat=True)) == [NO_SECRET]

    settings.WEBHOOK_SECRET = SECRET
    drive(queue, lambda: bool(receiver.accepted))
    assert WebhookDelivery.objects.get().status == WebhookDeliveryStatus.DELIVERED


@pytest.mark.django_db(transaction=True)
def test_it_lets_one_worker_hold_a_delivery_and_hands_it_over_when_the_lease_expires(receivers):
    receiver = receiver_start(receivers)
    endpoint(receiver)
    alert_open()
    delivery = WebhookDelivery.objects.get()
    held = webhook_delivery_claim(delivery_id=delivery.id)
    assert held is not None
    assert webhook_delivery_claim(delivery_id=delivery.id) is None, "the lease is live"
    assert webhook_deliveries_reconcile() == 0
    WebhookDelivery.objects.filter(id=delivery.id).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert webhook_deliveries_reconcile() == 1, "the expired lease is found"
    taken = webhook_delivery_claim(delivery_id=delivery.id)
    assert taken is not None
    assert taken.delivery.attempts == 2
    # The first worker's late answer is logged but changes nothing: it no longer holds the row.
    assert not webhook_delivery_settle(claim=held, response=PostResult(200, "", 5))
    assert WebhookDelivery.objects.get().status == WebhookDeliveryStatus.PENDING
    assert webhook_delivery_settle(claim=taken, response=PostResult(200, "", 5))
    assert WebhookDelivery.objects.get().status == WebhookDeliveryStatus.DELIVERED
    assert WebhookAttempt.objects.count() == 2


@pytest.mark.django_db
def test_it_backs_off_exponentially_with_jitter_up_to_a_cap_and_never_gives_up(settings):
    settings.WEBHOOK_BACKOFF_CAP = 60
    for attempts, ceiling in [(1, 1), (2, 2), (3, 4), (6, 32), (7, 60), (50, 60), (10_000, 60)]:
        delays = [backoff_seconds(attempts=attempts) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1, "jittered"


@pytest.mark.django_db(transaction=True)
def test_it_skips_inactive_endpoints_and_resumes_when_reactivated(queue, receivers):
    receiver = receiver_start(receivers)
    hook = endpoint(receiver)
    WebhookEndpoint.objects.create(name="off", url=receiver.url, active=False)
    alert = alert_open()
    assert WebhookDelivery.objects.filter(alert=alert).count() == 1, "no row for an inactive endpoint"
    WebhookEndpoint.objects.filter(id=hook.id).update(active=False)
    work(queue)
    assert receiver.posts == []
    assert webhook_deliveries_reconcile() == 0
    assert WebhookDelivery.objects.get().attempts == 0
    WebhookEndpoint.objects.filter(id=hook.id).update(active=True)
    drive(queue, lambda: bool(receiver.accepted))


@pytest.mark.django_db
def test_it_rejects_an_unknown_event():
    alert = Alert.objects.create(
        kind=AlertKind.INGEST_LAG, severity=AlertSeverity.WARNING, summary="lag", opened_at=timezone.now()
    )
    with pytest.raises(ValueError, match="unknown webhook event"):
        webhook_deliveries_request(alert=alert, event="opened")
    payload = webhook_payload(alert=alert, event=WebhookEvent.FIRING, receiver="r")
    # A network-wide alert has no subject label (Alertmanager drops empty labels) and links to the overview.
    assert payload["alerts"][0]["labels"] == {"alertname": "ingest_lag", "severity": "warning"}
    assert payload["groupKey"] == '{}:{alertname="ingest_lag"}'
    assert payload["alerts"][0]["generatorURL"] == "https://cp.example.org/"
    failing = Alert.objects.create(
        kind=AlertKind.RECOVERY_FAILING,
        subject="17",
        severity=AlertSeverity.WARNING,
        summary="replay failing",
        details={"task_id": 17, "task_kind": "replay", "task_subject": BATCH},
        opened_at=timezone.now(),
    )
    item = webhook_payload(alert=failing, event=WebhookEvent.FIRING, receiver="r")["alerts"][0]
    assert item["labels"]["batch"] == BATCH, "a failing replay is about its batch"
    assert item["generatorURL"] == f"https://cp.example.org/batches/{BATCH}/"


@pytest.mark.django_db
def test_it_lets_staff_register_endpoints_and_acknowledge_alerts_in_the_admin():
    staff = User.objects.create_user("ops", password="pw", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)
    response = client.post(
        "/admin/alerts/webhookendpoint/add/",
        {"name": "pager", "url": "https://hooks.example.org/x", "active": "on"},
    )
    assert response.status_code == 302, response.content[:500]
    hook = WebhookEndpoint.objects.get()
    assert hook.created_by == "ops"
    alert = Alert.objects.create(
        kind=AlertKind.QUORUM_IMPOSSIBLE,
        severity=AlertSeverity.CRITICAL,
        summary="stake online 40%",
        opened_at=timezone.now(),
    )
    assert client.get(f"/admin/alerts/webhookendpoint/{hook.id}/change/").status_code == 200
    assert client.get("/admin/alerts/alert/").status_code == 200
    assert client.get(f"/admin/alerts/alert/{alert.id}/change/").status_code == 200
    response = client.post("/admin/alerts/alert/", {"action": "acknowledge", "_selected_action": [alert.id]})
    assert response.status_code == 302
    alert.refresh_from_db()
    assert alert.acknowledged_by == "ops"
    assert alert.acknowledged_at is not None
    # The alert itself is read-only: no edits, no deletes, no hand-made alerts.
    assert client.post(f"/admin/alerts/alert/{alert.id}/delete/").status_code == 403
    assert client.get("/admin/alerts/alert/add/").status_code == 403
