"""Forgers on the open intake: what they can cost is bounded, they never keep an honest signature out, never
change an operator's state, and are recorded against their own address."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection as db_connection

from bls import G1Point, g1_mul
from intake.jobs import intake_sweep
from intake.models import Signature, SignatureStatus
from intake.parse import IntakeError, signed_response_parse
from intake.services import signature_submit
from liveness.models import OperatorLiveness
from progress.models import BatchProgress
from tests.chain_fixtures import Net, net_with_task, signed_response
from tests.redis_keys import redis_forget

URL = "/api/v1/signatures"


@pytest.fixture(autouse=True)
def clean_counts() -> None:
    """Rate counts live in Redis: start from none."""
    redis_forget("rate:*")


@pytest.fixture
def network(anvil: Any) -> tuple[Net, bytes]:
    return net_with_task(anvil, seed=31)


def forged(net: Net, root: bytes, *, operator: int, n: int) -> dict[str, Any]:
    """A well-formed submission in ``operator``'s name that is not its signature: a point on the curve, distinct
    for each ``n`` (the (n+2)-th multiple of the signature under a wrong key)."""
    body = signed_response(net, root=root, operator=operator, wrong_key=True)
    point = G1Point(int(body["blsSignature"]["X"], 16), int(body["blsSignature"]["Y"], 16))
    body["blsSignature"] = g1_mul(point, n + 2).to_hex()
    return body


def post(client: Any, body: dict[str, Any], *, address: str, forwarded: str | None = None) -> Any:
    extra = {"REMOTE_ADDR": address}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return client.post(URL, data=json.dumps(body), content_type="application/json", **extra)


@pytest.mark.django_db
def test_it_bounds_unverified_forgeries_per_address_and_never_keeps_the_honest_one_out(
    client: Any, network: tuple[Net, bytes]
) -> None:
    net, root = network
    first = post(client, forged(net, root, operator=3, n=0), address="198.51.100.7")
    assert first.status_code == 202
    # The same forger again, with another forgery: one place per address until verification settles it.
    again = post(client, forged(net, root, operator=3, n=1), address="198.51.100.7")
    assert again.status_code == 429
    assert again["Retry-After"] == "2"
    assert "awaits verification" in again.json()["error"]
    # The operator's own submission, from its own address, gets in beside it.
    honest = post(client, signed_response(net, root=root, operator=3), address="192.0.2.40")
    assert honest.status_code == 202
    # Other forgers fill the places left (three in all) and no more.
    assert post(client, forged(net, root, operator=3, n=2), address="198.51.100.8").status_code == 202
    late = post(client, forged(net, root, operator=3, n=3), address="198.51.100.9")
    assert late.status_code == 429
    assert "3 signatures in this operator's name" in late.json()["error"]
    assert Signature.objects.filter(status=SignatureStatus.PENDING).count() == 3

    intake_sweep()

    statuses = dict(Signature.objects.values_list("source", "status"))
    assert statuses == {
        "198.51.100.7": SignatureStatus.INVALID,
        "198.51.100.8": SignatureStatus.INVALID,
        "192.0.2.40": SignatureStatus.VERIFIED,
    }
    # Verification settled: the forger may post again (and is verified invalid again), the bound holds.
    assert post(client, forged(net, root, operator=3, n=1), address="198.51.100.7").status_code == 202


@pytest.mark.django_db
def test_it_lets_no_post_in_an_operators_name_change_its_state(
    client: Any, network: tuple[Net, bytes]
) -> None:
    net, root = network
    assert post(client, forged(net, root, operator=1, n=0), address="198.51.100.7").status_code == 202
    intake_sweep()
    assert not OperatorLiveness.objects.exists(), "a forgery is no sign of life"
    assert post(client, signed_response(net, root=root, operator=1), address="192.0.2.20").status_code == 202
    intake_sweep()
    assert OperatorLiveness.objects.get().state == "up"


@pytest.mark.django_db
def test_it_rate_limits_each_address_and_believes_forwarded_for_only_from_trusted_proxies(
    client: Any, network: tuple[Net, bytes], settings: Any
) -> None:
    settings.INTAKE_RATE = "3/min"
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    net, root = network
    bodies = [signed_response(net, root=root, operator=i) for i in range(4)]
    # An untrusted peer's X-Forwarded-For is ignored: all four count against the peer itself.
    answers = [
        post(client, b, address="203.0.113.5", forwarded=f"192.0.2.{i}").status_code
        for i, b in enumerate(bodies)
    ]
    assert answers == [202, 202, 202, 429]
    limited = post(client, bodies[3], address="203.0.113.5")
    assert limited.status_code == 429
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert "more than 3/min posts from 203.0.113.5" in limited.json()["error"]
    # Through a trusted proxy each client counts for itself, however the chain of proxies is written.
    for i in range(3):
        assert (
            post(
                client, bodies[3], address="10.1.2.3", forwarded=f"192.0.2.99, 192.0.2.{i}, 10.0.0.9"
            ).status_code
            == 202
        )
    assert Signature.objects.filter(source__startswith="192.0.2.").count() == 1  # the rest were duplicates
    assert set(Signature.objects.values_list("source", flat=True)) == {"203.0.113.5", "192.0.2.0"}


@pytest.mark.django_db
def test_it_reaches_quorum_while_a_thousand_forgeries_flood_one_operator(
    client: Any, network: tuple[Net, bytes], settings: Any
) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    net, root = network
    forgeries = [forged(net, root, operator=3, n=n) for n in range(7)]
    flood = [
        post(client, forgeries[i % 7], address="10.9.9.9", forwarded=f"198.18.{i // 250}.{i % 250}")
        for i in range(1000)
    ]
    assert {r.status_code for r in flood} == {202, 429}
    stored = Signature.objects.filter(operator_id=net.state["operators"][3]["operator_id"]).count()
    assert stored == 3, (
        "a few are stored as evidence, the rest refused (or answered as duplicates) before any work"
    )
    # Every operator posts from its registered node's address: operator 3 too, past the forgers' places.
    for i in range(4):
        assert (
            post(client, signed_response(net, root=root, operator=i), address="127.0.0.1").status_code == 202
        )
    intake_sweep()
    intake_sweep()
    assert Signature.objects.filter(status=SignatureStatus.VERIFIED).count() == 4
    progress = BatchProgress.objects.get()
    assert progress.quorum_reached_at is not None


def race(bodies: list[Any], sources: list[str]) -> list[str]:
    """Submit every body at the same instant, each from its source, each on its own connection: the answers."""
    gate = threading.Barrier(len(bodies))

    def submit(body: Any, source: str) -> str:
        gate.wait()
        try:
            return signature_submit(response=body, source=source).status
        except IntakeError as exc:
            return str(exc.status)
        finally:
            db_connection.close()

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return sorted(pool.map(submit, bodies, sources))


@pytest.mark.django_db(transaction=True)
def test_it_holds_the_bound_on_unverified_forgeries_when_they_arrive_at_the_same_instant(
    network: tuple[Net, bytes],
) -> None:
    """Posts in one operator's name race each other from many addresses: the pair's lock must make each count
    see the ones committed before it, or a burst stores more than INTAKE_MAX_UNVERIFIED."""
    net, root = network
    operator_id = net.state["operators"][2]["operator_id"]
    bound = int(django_settings.INTAKE_MAX_UNVERIFIED)
    for round_ in range(5):
        bodies = [
            signed_response_parse(json.dumps(forged(net, root, operator=2, n=100 * round_ + n)).encode())
            for n in range(8)
        ]
        answers = race(bodies, [f"198.51.{round_}.{n}" for n in range(len(bodies))])
        assert answers == ["429"] * (len(bodies) - bound) + ["accepted"] * bound
        assert (
            Signature.objects.filter(operator_id=operator_id, status=SignatureStatus.PENDING).count() == bound
        )
        Signature.objects.filter(operator_id=operator_id).update(status=SignatureStatus.INVALID)
