from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from controlplane.auth import api_token_create
from controlplane.models import TokenScope
from ledger.models import Operator
from ledger.selectors import STAKE_HISTORY_LIMIT
from liveness.models import OperatorLiveness, OperatorState
from tests.factories import ETH, hex32, operator_create, stake_update

pytestmark = pytest.mark.django_db


@pytest.fixture
def client() -> Client:
    """A machine reading with a read token (every API read needs a user unless the dashboard is public)."""
    user = User.objects.create_user(username="reader")
    _, key = api_token_create(user=user, name="reader", scope=TokenScope.READ, created_by="tests")
    return Client(headers={"authorization": f"Token {key}"})


def test_it_lists_operators_by_stake_then_operator_id_with_their_share(client: Client) -> None:
    small = operator_create(label="small", stake=10 * ETH)
    big = operator_create(label="big", stake=30 * ETH)
    tie_a, tie_b = sorted(
        [operator_create(label="tie-1", stake=20 * ETH), operator_create(label="tie-2", stake=20 * ETH)],
        key=lambda o: o.operator_id,
    )

    response = client.get("/api/v1/operators/")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 4
    results = body["results"]
    assert [o["operator_id"] for o in results] == [
        big.operator_id,
        tie_a.operator_id,
        tie_b.operator_id,
        small.operator_id,
    ]
    assert [o["stake"] for o in results] == [str(30 * ETH), str(20 * ETH), str(20 * ETH), str(10 * ETH)]
    assert [o["stake_share"] for o in results] == ["0.375000", "0.250000", "0.250000", "0.125000"]
    assert set(results[0]) == {
        "operator_id",
        "address",
        "pubkey_g1",
        "pubkey_g2",
        "socket",
        "registered",
        "registered_block",
        "deregistered_block",
        "stake",
        "stake_share",
    }


def test_it_rounds_the_share_to_six_places_and_counts_only_registered_stake(client: Client) -> None:
    operator_create(label="a", stake=1 * ETH)
    operator_create(label="b", stake=2 * ETH)
    gone = operator_create(label="gone", stake=100 * ETH, registered=False, deregistered_block=50)

    results = {o["operator_id"]: o for o in client.get("/api/v1/operators/").json()["results"]}

    shares = sorted(o["stake_share"] for o in results.values())
    assert shares == ["0.000000", "0.333333", "0.666667"]
    assert results[gone.operator_id]["registered"] is False
    assert results[gone.operator_id]["deregistered_block"] == 50
    assert results[gone.operator_id]["stake_share"] == "0.000000"


def test_it_gives_a_null_share_when_no_registered_operator_has_stake(client: Client) -> None:
    operator_create(label="empty", stake=0)

    result = client.get("/api/v1/operators/").json()["results"][0]

    assert result["stake"] == "0"
    assert result["stake_share"] is None


def test_it_returns_one_operator_with_its_stake_history_newest_first(client: Client) -> None:
    operator = operator_create(label="hist", stake=5 * ETH, registered_block=10)
    other = operator_create(label="other", stake=5 * ETH, registered_block=10)
    stake_update(operator_id=operator.operator_id, stake=7 * ETH, block_number=20)
    stake_update(operator_id=operator.operator_id, stake=99 * ETH, block_number=25, removed=True)
    stake_update(operator_id=operator.operator_id, stake=6 * ETH, block_number=30)

    response = client.get(f"/api/v1/operators/{operator.operator_id.upper().replace('0X', '0x')}/")

    assert response.status_code == 200
    body = response.json()
    assert body["operator_id"] == operator.operator_id
    assert body["address"] == operator.address
    assert body["stake"] == str(6 * ETH)
    assert body["stake_share"] == "0.545455"  # 6 / (6 + 5)
    assert body["stake_history"] == [
        {"block_number": 30, "stake": str(6 * ETH)},
        {"block_number": 20, "stake": str(7 * ETH)},
        {"block_number": 10, "stake": str(5 * ETH)},
    ]
    assert body["pubkey_g1"] == operator.pubkey_g1
    assert body["pubkey_g2"] == operator.pubkey_g2
    assert other.operator_id not in str(body["stake_history"])


def test_it_keeps_only_the_last_hundred_stake_updates(client: Client) -> None:
    operator = operator_create(label="busy", stake=1, registered_block=1)
    for block in range(2, STAKE_HISTORY_LIMIT + 12):
        stake_update(operator_id=operator.operator_id, stake=block, block_number=block)

    history = client.get(f"/api/v1/operators/{operator.operator_id}/").json()["stake_history"]

    assert len(history) == STAKE_HISTORY_LIMIT
    assert history[0] == {"block_number": STAKE_HISTORY_LIMIT + 11, "stake": str(STAKE_HISTORY_LIMIT + 11)}
    assert history[-1]["block_number"] == 12


def test_it_writes_hex_lowercase(client: Client) -> None:
    operator_create(
        label="upper",
        operator_id=hex32("upper-op").upper().replace("0X", "0x"),
        address="0x" + "CD" * 20,
        pubkey_g1={"X": "0x" + "AB" * 32, "Y": "0x" + "EF" * 32},
    )

    result = client.get("/api/v1/operators/").json()["results"][0]

    assert result["operator_id"] == hex32("upper-op")
    assert result["address"] == "0x" + "cd" * 20
    assert result["pubkey_g1"] == {"X": "0x" + "ab" * 32, "Y": "0x" + "ef" * 32}


def test_it_answers_404_for_an_unknown_operator(client: Client) -> None:
    response = client.get(f"/api/v1/operators/{hex32('nobody')}/")

    assert response.status_code == 404
    assert response.json() == {"error": "no operator with this operator_id", "field": "operator_id"}


def test_it_answers_400_naming_the_field_for_a_malformed_operator_id(client: Client) -> None:
    response = client.get("/api/v1/operators/0xnot-an-id/")

    assert response.status_code == 400
    assert response.json() == {
        "error": "operator_id must be 0x followed by 64 hex digits",
        "field": "operator_id",
    }


def test_it_filters_operators_by_registration_and_liveness(client: Client) -> None:
    up = operator_create(label="up", stake=40 * ETH)
    down = operator_create(label="down", stake=30 * ETH)
    never_probed = operator_create(label="never", stake=20 * ETH)
    gone = operator_create(label="gone", stake=10 * ETH)
    Operator.objects.filter(pk=gone.pk).update(registered=False)
    now = timezone.now()
    OperatorLiveness.objects.create(operator_id=up.operator_id, state=OperatorState.UP, since=now)
    OperatorLiveness.objects.create(operator_id=down.operator_id, state=OperatorState.DOWN, since=now)
    OperatorLiveness.objects.create(operator_id=gone.operator_id, state=OperatorState.UNKNOWN, since=now)

    def operator_ids(query: str) -> list[str]:
        response = client.get(f"/api/v1/operators/?{query}")
        assert response.status_code == 200, response.content
        return [o["operator_id"] for o in response.json()["results"]]

    assert operator_ids("registered=true") == [up.operator_id, down.operator_id, never_probed.operator_id]
    assert operator_ids("registered=false") == [gone.operator_id]
    assert operator_ids("state=up") == [up.operator_id]
    assert operator_ids("state=down") == [down.operator_id]
    assert operator_ids("state=unknown") == [never_probed.operator_id, gone.operator_id], (
        "never probed counts as unknown"
    )
    assert operator_ids("state=degraded") == []
    assert operator_ids("state=unknown&registered=true") == [never_probed.operator_id]
    bad = client.get("/api/v1/operators/?state=asleep")
    assert bad.status_code == 400
    assert bad.json()["field"] == "state"
    assert client.get("/api/v1/operators/?registered=yes-ish").json()["field"] == "registered"
