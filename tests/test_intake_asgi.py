"""The intake's fast path: POST /api/v1/signatures answered by the ASGI application ahead of Django, with the
same answers as the Django view and the same checks in front (body limit, rate, trusted proxies)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import ApplicationCommunicator
from django.conf import settings as django_settings

from controlplane.asgi import application
from intake.models import Signature, SignatureStatus
from tests.chain_fixtures import Net, net_with_task, signed_response
from tests.redis_keys import redis_forget

URL = "/api/v1/signatures"


@pytest.fixture(autouse=True)
def clean_counts() -> None:
    redis_forget("rate:*")


@pytest.fixture
def network(anvil: Any) -> tuple[Net, bytes]:
    return net_with_task(anvil, seed=41)


def call(
    body: bytes,
    *,
    method: str = "POST",
    path: str = URL,
    address: str = "192.0.2.10",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request through the whole ASGI application, as uvicorn hands it over: (status, headers, body)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *(headers or []),
        ],
        "client": (address, 40000),
        "server": ("testserver", 80),
    }

    async def run() -> tuple[int, dict[bytes, bytes], bytes]:
        communicator = ApplicationCommunicator(application, scope)
        await communicator.send_input({"type": "http.request", "body": body, "more_body": False})
        start = await communicator.receive_output(timeout=30)
        chunks = []
        while True:
            message = await communicator.receive_output(timeout=30)
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        await communicator.wait(timeout=5)
        return start["status"], {k.lower(): v for k, v in start["headers"]}, b"".join(chunks)

    return async_to_sync(run)()


@pytest.mark.django_db(transaction=True)
def test_it_stores_a_signature_and_answers_like_the_view_without_going_through_django(
    network: tuple[Net, bytes],
) -> None:
    net, root = network
    body = signed_response(net, root=root, operator=0)
    status, headers, raw = call(json.dumps(body).encode())
    assert status == 202
    answer = json.loads(raw)
    assert answer["status"] == "accepted"
    assert answer["batchIdentifierHash"] == body["batchIdentifierHash"]
    row = Signature.objects.get(id=answer["signatureId"])
    assert (row.operator_id, row.status, row.source) == (
        body["operatorId"],
        SignatureStatus.PENDING,
        "192.0.2.10",
    )
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"x-content-type-options"] == b"nosniff"
    # Django's middleware puts X-Frame-Options on everything it answers: this answer never went through it.
    assert b"x-frame-options" not in headers

    status, _, raw = call(json.dumps(body).encode(), path=URL + "/")
    assert (status, json.loads(raw)["status"]) == (202, "duplicate")
    assert Signature.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_it_refuses_bad_bodies_with_the_field_at_fault(network: tuple[Net, bytes]) -> None:
    net, root = network
    status, _, raw = call(b"{not json")
    assert status == 400
    assert "error" in json.loads(raw)

    body = signed_response(net, root=root, operator=1)
    body["operatorId"] = "0x" + "ab" * 32
    status, _, raw = call(json.dumps(body).encode())
    assert status == 403
    assert json.loads(raw)["field"] == "operatorId"
    assert not Signature.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_it_refuses_a_body_over_the_intake_limit_before_reading_it(network: tuple[Net, bytes]) -> None:
    status, headers, raw = call(b" " * (int(django_settings.INTAKE_MAX_BODY_BYTES) + 1))
    assert status == 413
    assert "larger than" in json.loads(raw)["error"]
    assert headers[b"connection"] == b"close"


@pytest.mark.django_db(transaction=True)
def test_it_rate_limits_by_the_forwarded_address_only_behind_a_trusted_proxy(
    network: tuple[Net, bytes], settings: Any
) -> None:
    settings.INTAKE_RATE = "2/min"
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    net, root = network
    bodies = [json.dumps(signed_response(net, root=root, operator=i)).encode() for i in range(4)]
    forwarded = [(b"x-forwarded-for", b"198.51.100.1")]
    answers = [call(b, address="203.0.113.5", headers=forwarded)[0] for b in bodies[:3]]
    assert answers == [202, 202, 429], "an untrusted peer's X-Forwarded-For counts for nothing"
    status, headers, raw = call(bodies[2], address="203.0.113.5")
    assert status == 429
    assert 1 <= int(headers[b"retry-after"]) <= 60
    assert "more than 2/min posts from 203.0.113.5" in json.loads(raw)["error"]

    status, _, _ = call(
        bodies[3], address="10.1.2.3", headers=[(b"x-forwarded-for", b"198.51.100.9, 10.0.0.9")]
    )
    assert status == 202
    assert Signature.objects.filter(source="198.51.100.9").count() == 1


@pytest.mark.django_db(transaction=True)
def test_it_leaves_other_methods_and_paths_to_django(network: tuple[Net, bytes]) -> None:
    status, headers, _ = call(b"", method="GET")
    assert status == 405  # the view only takes POST
    assert b"x-frame-options" in headers
    status, _, _ = call(b"{}", path="/api/v1/signaturesx")
    assert status == 404


@pytest.mark.django_db(transaction=True)
def test_it_answers_500_and_logs_when_the_store_fails_unexpectedly(
    network: tuple[Net, bytes], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    net, root = network

    def broken(**_: object) -> None:
        raise RuntimeError("injected fault")

    monkeypatch.setattr("intake.groups.signatures_receive", broken)
    status, _, raw = call(json.dumps(signed_response(net, root=root, operator=2)).encode())
    assert (status, json.loads(raw)) == (500, {"error": "internal error"})
    assert any("injected fault" in (r.exc_text or "") or r.exc_info for r in caplog.records)
