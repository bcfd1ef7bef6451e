from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from controlplane.auth import api_token_create
from controlplane.models import TokenScope
from ledger.models import Batch
from progress.models import BatchProgress
from tests.factories import batch_create, hex32

pytestmark = pytest.mark.django_db


@pytest.fixture
def client() -> Client:
    """A machine reading with a read token (every API read needs a user unless the dashboard is public)."""
    user = User.objects.create_user(username="reader")
    _, key = api_token_create(user=user, name="reader", scope=TokenScope.READ, created_by="tests")
    return Client(headers={"authorization": f"Token {key}"})


HEX = "0123456789abcdef"


def _is_lower_hex(value: str) -> bool:
    return value.startswith("0x") and all(c in HEX for c in value[2:])


def test_it_lists_batches_newest_first_with_every_field(client: Client) -> None:
    older = batch_create(label="older", created_block=100)
    newer = batch_create(label="newer", created_block=120, verified_block=125)
    same_block_later = batch_create(label="same-block", created_block=120)

    response = client.get("/api/v1/batches/")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["count"] == 3
    assert body["next"] is None
    assert body["previous"] is None
    assert [b["identifier"] for b in body["results"]] == [
        same_block_later.identifier,
        newer.identifier,
        older.identifier,
    ]
    verified = body["results"][1]
    assert set(verified) == {
        "identifier",
        "batch_merkle_root",
        "sender_address",
        "task_created_block",
        "batch_data_pointer",
        "respond_to_task_fee_limit",
        "event_version",
        "status",
        "created_block",
        "created_tx",
        "verified_block",
        "verified_tx",
        "first_seen_at",
        "updated_at",
        "progress",
    }
    assert verified["progress"] is None, "no progress before any signature was verified"
    assert verified["status"] == "verified"
    assert verified["verified_block"] == 125
    assert _is_lower_hex(verified["verified_tx"])
    assert verified["batch_merkle_root"] == newer.merkle_root
    assert verified["respond_to_task_fee_limit"] == str(10**15)
    pending = body["results"][2]
    assert pending["status"] == "pending"
    assert pending["verified_block"] is None
    assert pending["verified_tx"] is None


def test_it_paginates(client: Client) -> None:
    size = int(str(settings.REST_FRAMEWORK["PAGE_SIZE"]))
    for i in range(2 * size + 1):
        batch_create(label=f"b{i}", created_block=100 + i)

    first = client.get("/api/v1/batches/").json()
    third = client.get("/api/v1/batches/?page=3").json()

    assert first["count"] == 2 * size + 1
    assert [b["created_block"] for b in first["results"]] == [100 + 2 * size - i for i in range(size)]
    assert first["previous"] is None
    assert first["next"].endswith("/api/v1/batches/?page=2")
    assert [b["created_block"] for b in third["results"]] == [100]
    assert third["next"] is None
    assert third["previous"].endswith("/api/v1/batches/?page=2")


def test_it_walks_the_list_by_cursor_through_ties_at_the_same_cost_at_any_depth(
    client: Client, django_assert_max_num_queries: object
) -> None:
    size = int(str(settings.REST_FRAMEWORK["PAGE_SIZE"]))
    # Two batches per block: the cursor must split a block between pages without losing or repeating one.
    for i in range(size + 3):
        batch_create(label=f"b{i}", created_block=100 + i // 2)
    expected = [(b.created_block, b.identifier) for b in Batch.objects.order_by("-created_block", "-id")]

    first = client.get("/api/v1/batches/").json()
    seen = [(b["created_block"], b["identifier"]) for b in first["results"]]
    last = Batch.objects.get(identifier=seen[-1][1])
    page = client.get(f"/api/v1/batches/?cursor={last.created_block}.{last.id}").json()
    seen += [(b["created_block"], b["identifier"]) for b in page["results"]]

    assert seen == expected
    assert page["count"] == size + 3
    assert page["next"] is None
    assert page["previous"] is None
    # A cursor page holding a full page links to the next one by cursor.
    top = Batch.objects.order_by("-created_block", "-id").first()
    assert top is not None
    full = client.get(f"/api/v1/batches/?cursor={top.created_block}.{top.id + 1}").json()
    assert len(full["results"]) == size
    assert "cursor=" in full["next"]
    assert "page=" not in full["next"]
    # The count comes from the counts kept by the writes: no count(*) over the table.
    with django_assert_max_num_queries(6):  # type: ignore[operator]
        assert client.get(f"/api/v1/batches/?cursor={last.created_block}.{last.id}").status_code == 200


def test_it_answers_a_malformed_cursor_with_400_naming_it(client: Client) -> None:
    response = client.get("/api/v1/batches/?cursor=abc")
    assert response.status_code == 400
    assert "cursor" in response.content.decode()


def test_it_counts_filtered_lists_by_counting_and_plain_ones_from_the_kept_counts(client: Client) -> None:
    for i in range(3):
        batch_create(label=f"p{i}", created_block=100 + i)
    batch_create(label="v", created_block=200, verified_block=201)

    assert client.get("/api/v1/batches/").json()["count"] == 4
    assert client.get("/api/v1/batches/?status=verified").json()["count"] == 1
    assert client.get("/api/v1/batches/?created_block_min=101").json()["count"] == 3


def test_it_answers_a_page_past_the_end_with_404_and_a_malformed_page_with_400(client: Client) -> None:
    batch_create(label="only")

    past = client.get("/api/v1/batches/?page=9")
    malformed = client.get("/api/v1/batches/?page=abc")

    assert past.status_code == 404
    assert past.json()["field"] == "page"
    assert malformed.status_code == 400
    assert malformed.json() == {"error": "page must be a positive integer", "field": "page"}


def test_it_returns_one_batch_by_identifier_in_any_case(client: Client) -> None:
    batch = batch_create(label="one", fee_limit=None, event_version=2)

    response = client.get(f"/api/v1/batches/{batch.identifier.upper().replace('0X', '0x')}/")

    assert response.status_code == 200
    body = response.json()
    assert body["identifier"] == batch.identifier
    assert body["respond_to_task_fee_limit"] is None
    assert body["event_version"] == 2


def test_it_writes_hex_lowercase_even_when_given_upper_case(client: Client) -> None:
    batch = batch_create(
        label="upper",
        identifier=hex32("upper").upper().replace("0X", "0x"),
        merkle_root=hex32("upper-root").upper().replace("0X", "0x"),
        sender="0x" + "AB" * 20,
    )

    body = client.get("/api/v1/batches/").json()["results"][0]

    for key in ("identifier", "batch_merkle_root", "sender_address", "created_tx"):
        assert _is_lower_hex(body[key]), key
    assert body["identifier"] == batch.identifier.lower()
    assert body["sender_address"] == "0x" + "ab" * 20


def test_it_answers_404_for_an_unknown_batch(client: Client) -> None:
    response = client.get(f"/api/v1/batches/{hex32('nobody')}/")

    assert response.status_code == 404
    assert response.json() == {"error": "no batch with this identifier", "field": "identifier"}


@pytest.mark.parametrize("identifier", ["0x1234", "nothex", "0x" + "zz" * 32, "0x" + "ab" * 33, "ab" * 32])
def test_it_answers_400_naming_the_field_for_a_malformed_identifier(client: Client, identifier: str) -> None:
    response = client.get(f"/api/v1/batches/{identifier}/")

    assert response.status_code == 400
    assert response.json() == {
        "error": "identifier must be 0x followed by 64 hex digits",
        "field": "identifier",
    }


def test_it_writes_large_wei_values_exactly(client: Client) -> None:
    huge = 2**256 - 1
    batch = batch_create(label="huge", fee_limit=huge)

    body = client.get(f"/api/v1/batches/{batch.identifier}/").json()

    assert body["respond_to_task_fee_limit"] == str(huge)


def test_it_filters_batches_by_status_risk_time_and_block(client: Client) -> None:
    now = timezone.now()
    old = batch_create(label="old", created_block=100, verified_block=101)
    risky = batch_create(label="risky", created_block=110)
    calm = batch_create(label="calm", created_block=120)
    fresh = batch_create(label="fresh", created_block=130)
    BatchProgress.objects.create(batch=risky, at_risk=True)
    BatchProgress.objects.create(batch=calm, at_risk=False)
    for batch, age in ((old, 3), (risky, 2), (calm, 1), (fresh, 0)):
        Batch.objects.filter(pk=batch.pk).update(first_seen_at=now - timedelta(hours=age))

    def identifiers(query: str) -> list[str]:
        response = client.get(f"/api/v1/batches/?{query}")
        assert response.status_code == 200, response.content
        return [b["identifier"] for b in response.json()["results"]]

    assert identifiers("status=verified") == [old.identifier]
    assert identifiers("status=pending") == [fresh.identifier, calm.identifier, risky.identifier]
    assert identifiers("at_risk=true") == [risky.identifier]
    assert identifiers("at_risk=false") == [fresh.identifier, calm.identifier, old.identifier], (
        "a batch without progress is not at risk"
    )
    assert identifiers("created_block_min=110&created_block_max=120") == [calm.identifier, risky.identifier]
    two_hours_ago = (now - timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    assert identifiers(f"created_after={two_hours_ago}") == [
        fresh.identifier,
        calm.identifier,
        risky.identifier,
    ], "created_after is inclusive"
    assert identifiers(f"created_before={two_hours_ago}") == [old.identifier], "created_before is exclusive"
    assert identifiers("status=pending&at_risk=false&created_block_min=125") == [fresh.identifier]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=lost", "status"),
        ("at_risk=maybe", "at_risk"),
        ("created_block_min=-1", "created_block_min"),
        ("created_block_max=1.5", "created_block_max"),
        (f"created_block_max={2**63}", "created_block_max"),
        ("created_before=2024-13-01T00:00:00Z", "created_before"),
    ],
)
def test_it_answers_400_naming_a_malformed_batch_filter(client: Client, query: str, field: str) -> None:
    response = client.get(f"/api/v1/batches/?{query}")

    assert response.status_code == 400
    assert response.json()["field"] == field
