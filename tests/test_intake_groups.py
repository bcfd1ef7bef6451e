"""Posts that arrive together are stored together (one transaction), each with its own outcome, and the per-pair
bounds hold inside a group as between groups."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from django.conf import settings as django_settings

from bls import G1Point, g1_mul
from intake import groups as intake_groups
from intake.groups import SignatureGroups
from intake.models import Signature, SignatureStatus
from intake.parse import IntakeError, SignedResponse, signed_response_parse
from intake.services import SubmitResult, signatures_submit
from tests.chain_fixtures import Net, net_with_task, signed_response
from tests.redis_keys import redis_forget

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def clean_counts() -> None:
    redis_forget("rate:*")


@pytest.fixture
def network(anvil: Any) -> tuple[Net, bytes]:
    return net_with_task(anvil, seed=43)


def parsed(body: dict[str, Any]) -> SignedResponse:
    return signed_response_parse(json.dumps(body).encode())


def forged(net: Net, root: bytes, *, operator: int, n: int) -> SignedResponse:
    """A well-formed submission in ``operator``'s name that is not its signature, distinct for each ``n``."""
    body = signed_response(net, root=root, operator=operator, wrong_key=True)
    point = G1Point(int(body["blsSignature"]["X"], 16), int(body["blsSignature"]["Y"], 16))
    body["blsSignature"] = g1_mul(point, n + 2).to_hex()
    return parsed(body)


def outcome_of(result: SubmitResult | IntakeError) -> str:
    return str(result.status) if isinstance(result, IntakeError) else result.status


def test_it_gives_each_post_of_a_group_its_own_outcome_in_order(network: tuple[Net, bytes]) -> None:
    net, root = network
    honest = parsed(signed_response(net, root=root, operator=0))
    unknown = parsed({**signed_response(net, root=root, operator=1), "operatorId": "0x" + "ab" * 32})
    results = signatures_submit(
        posts=[
            (honest, "127.0.0.1"),
            (parsed(signed_response(net, root=root, operator=1)), "127.0.0.1"),
            (unknown, "127.0.0.1"),
            (honest, "203.0.113.9"),  # the same signature again, in the same group: a duplicate of the first
        ]
    )
    assert [outcome_of(r) for r in results] == ["accepted", "accepted", "403", "duplicate"]
    first, second, refused, again = results
    assert isinstance(first, SubmitResult)
    assert isinstance(again, SubmitResult)
    assert isinstance(second, SubmitResult)
    assert isinstance(refused, IntakeError)
    assert again.signature_id == first.signature_id != second.signature_id
    assert refused.field == "operatorId"
    assert Signature.objects.filter(status=SignatureStatus.PENDING).count() == 2


def test_it_holds_the_bound_on_unverified_forgeries_inside_one_group(network: tuple[Net, bytes]) -> None:
    """Eight forgeries of one pair in one group: each must count the ones stored before it in the group, or the
    group stores them all."""
    net, root = network
    bound = int(django_settings.INTAKE_MAX_UNVERIFIED)
    posts = [(forged(net, root, operator=2, n=n), f"198.51.100.{n}") for n in range(8)]
    # The same address twice more: it already holds a place of this pair.
    posts += [(forged(net, root, operator=2, n=20), "198.51.100.0")]
    results = signatures_submit(posts=posts)
    assert [outcome_of(r) for r in results] == ["accepted"] * bound + ["429"] * (len(posts) - bound)
    operator_id = net.state["operators"][2]["operator_id"]
    assert Signature.objects.filter(operator_id=operator_id).count() == bound


def test_it_stores_what_arrived_while_a_group_was_being_stored_as_the_next_group(
    network: tuple[Net, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    net, root = network
    sizes: list[int] = []
    first_started, release = threading.Event(), threading.Event()
    real = intake_groups.signatures_receive

    def watched(*, posts: Any) -> Any:
        sizes.append(len(posts))
        if len(sizes) == 1:
            first_started.set()
            assert release.wait(30)
        return real(posts=posts)

    monkeypatch.setattr(intake_groups, "signatures_receive", watched)
    committers = SignatureGroups(committers=1)
    bodies = [signed_response(net, root=root, operator=i) for i in range(4)]

    def post(body: dict[str, Any]) -> Any:
        raw = json.dumps(body).encode()
        return committers.submit(source="127.0.0.1", parse=lambda: signed_response_parse(raw))

    futures = [post(bodies[0])]
    assert first_started.wait(30)
    futures += [post(body) for body in bodies[1:]]
    release.set()
    outcomes = [future.result(timeout=30) for future in futures]
    assert sizes == [1, 3]
    assert [result.status for _, result in outcomes] == ["accepted"] * 4
    assert [response.operator_id for response, _ in outcomes] == [b["operatorId"] for b in bodies]
    assert Signature.objects.count() == 4


@pytest.mark.parametrize("fault", ["raises", "loses an outcome"])
def test_it_answers_every_post_of_a_group_when_the_store_fails_unexpectedly(
    network: tuple[Net, bytes], monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    net, root = network
    real = intake_groups.signatures_receive

    def broken(**_: object) -> list[object]:
        if fault == "raises":
            raise RuntimeError("injected fault")
        return []

    monkeypatch.setattr(intake_groups, "signatures_receive", broken)
    committers = SignatureGroups(committers=1)
    raw = json.dumps(signed_response(net, root=root, operator=0)).encode()
    outcome = committers.submit(source="127.0.0.1", parse=lambda: signed_response_parse(raw)).result(
        timeout=30
    )
    assert isinstance(outcome, IntakeError)
    assert outcome.status == 500
    assert Signature.objects.count() == 0
    # The committer lives on: the next group is stored.
    monkeypatch.setattr(intake_groups, "signatures_receive", real)
    again = committers.submit(source="127.0.0.1", parse=lambda: signed_response_parse(raw)).result(timeout=30)
    assert not isinstance(again, IntakeError)
    assert again[1].status == "accepted"
    assert Signature.objects.count() == 1
