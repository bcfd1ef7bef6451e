"""Live sockets end to end: real ASGI stack (origin check, session auth, routing), real Redis channel layer, real
Postgres, a real chain ingested into the ledger; changes go through the real services and are sent on commit."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import Client

from controlplane.asgi import application
from dashboard.live.publish import EPOCH_KEY, batch_group, seq_key
from intake.models import Signature
from intake.parse import signed_response_parse
from intake.services import SubmitResult, signature_submit
from ledger.models import Batch, BatchStatus
from ledger.selectors import operator_stakes_at_block
from tests.chain_fixtures import Net, net_deploy, signed_response

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 10


class RolledBack(Exception):
    pass


@pytest.fixture(autouse=True)
def clean_redis():
    """Each test starts from an empty channel layer and sequence counters (this run's own Redis database)."""
    redis.Redis.from_url(settings.REDIS_URL).flushdb()


@pytest.fixture
def ledger(anvil) -> tuple[Net, bytes, str]:
    """Four operators (10, 20, 30, 40 ETH) and one task, ingested: (net, merkle root, batch identifier)."""
    net = net_deploy(anvil, operators=4)
    root = net.create_task(seed=71)
    net.ingester().sync_once()
    identifier = Batch.objects.get().identifier
    return net, root, identifier


@pytest.fixture
def session() -> str:
    user = get_user_model().objects.create_user("viewer", password="pw-for-tests-only")
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def socket(
    path: str, *, session: str | None = None, origin: str = "http://127.0.0.1"
) -> WebsocketCommunicator:
    headers = [(b"origin", origin.encode()), (b"host", b"127.0.0.1")]
    if session:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={session}".encode()))
    return WebsocketCommunicator(application, path, headers=headers)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    """Run an async scenario; sync_to_async calls in it run on this (the test's) thread and database connection."""
    async_to_sync(scenario)()


def submit(net: Net, root: bytes, operator: int) -> SubmitResult:
    body = json.dumps(signed_response(net, root=root, operator=operator)).encode()
    return signature_submit(response=signed_response_parse(body))


async def connected(path: str, *, session: str | None) -> tuple[WebsocketCommunicator, dict[str, Any]]:
    communicator = socket(path, session=session)
    accepted, _ = await communicator.connect(timeout=TIMEOUT)
    assert accepted
    snapshot = await communicator.receive_json_from(timeout=TIMEOUT)
    assert snapshot["type"] == "snapshot"
    return communicator, snapshot


async def close_code(communicator: WebsocketCommunicator) -> int:
    accepted, _ = await communicator.connect(timeout=TIMEOUT)
    assert accepted  # accepted, then closed: only so can the browser learn why
    message = await communicator.receive_output(timeout=TIMEOUT)
    assert message["type"] == "websocket.close"
    return int(message["code"])


def test_it_sends_a_batch_snapshot_on_connect_that_matches_the_ledger(ledger, session):
    net, root, identifier = ledger
    batch = Batch.objects.get(identifier=identifier)
    stakes = operator_stakes_at_block(block_number=batch.task_created_block)
    accepted = submit(net, root, operator=3)
    accepted_operator = Signature.objects.get(id=accepted.signature_id).operator_id

    async def scenario() -> None:
        communicator, snapshot = await connected(f"/ws/batches/{identifier}/", session=session)
        await communicator.disconnect()
        assert snapshot["seq"] == 2  # batch.created (at ingest), then the signature above
        data = snapshot["data"]
        assert data["identifier"] == identifier
        assert data["status"] == BatchStatus.PENDING
        assert data["created_block"] == batch.created_block
        assert Decimal(data["total_stake"]) == sum(stakes.values())
        assert data["signed_stake"] == "0"
        assert Decimal(data["pending_stake"]) == stakes[accepted_operator]
        assert data["signers"] == [
            {"operator_id": accepted_operator, "stake": str(stakes[accepted_operator]), "status": "pending"}
        ]
        assert {n["operator_id"] for n in data["non_signers"]} == set(stakes) - {accepted_operator}
        kinds = [e["kind"] for e in data["timeline"]]
        assert kinds[0].endswith("created")
        assert "signature.accepted" in kinds

    run(scenario)


def test_it_sends_an_overview_snapshot_on_connect_that_matches_the_ledger(ledger, session):
    net, _, identifier = ledger
    net.create_task(seed=72)
    net.ingester().sync_once()

    async def scenario() -> None:
        communicator, snapshot = await connected("/ws/quorum/", session=session)
        await communicator.disconnect()
        data = snapshot["data"]
        assert data["batches"]["pending"] == 2
        assert data["batches"]["verified"] == 0
        newest = await sync_to_async(
            lambda: list(Batch.objects.order_by("-created_block").values_list("identifier", flat=True))
        )()
        assert [row["identifier"] for row in data["recent_batches"]] == newest
        assert identifier in newest
        assert data["ingest"]["cursor_block"] is not None

    run(scenario)


def test_it_sends_a_change_after_a_committed_signature_to_both_groups(ledger, session):
    net, root, identifier = ledger

    async def scenario() -> None:
        batch_socket, batch_snapshot = await connected(f"/ws/batches/{identifier}/", session=session)
        quorum_socket, quorum_snapshot = await connected("/ws/quorum/", session=session)
        result = await sync_to_async(submit)(net, root, 2)
        for communicator, snapshot in ((batch_socket, batch_snapshot), (quorum_socket, quorum_snapshot)):
            # An accepted post is no sign of life (only a verified signature is): nothing else comes first.
            changes = [await communicator.receive_json_from(timeout=TIMEOUT)]
            assert [c["seq"] for c in changes] == list(
                range(snapshot["seq"] + 1, snapshot["seq"] + 1 + len(changes))
            )
            change = changes[-1]
            assert change["type"] == "change"
            assert change["kind"] == "signature.accepted"
            assert change["batch"] == identifier
            assert change["operator"] == expected_operator
            assert change["data"]["signature_id"] == result.signature_id
            assert change["data"]["stake"] == str(30 * 10**18)
            await communicator.disconnect()

    expected_operator = signed_response(net, root=root, operator=2)["operatorId"]
    run(scenario)


def test_it_keeps_an_idle_socket_alive_past_the_redis_read_timeout(ledger, session, settings):
    """redis-py reads with a 5 s timeout unless told otherwise, and the channel layer blocks 5 s for a message:
    a socket idle that long must still be there for the next change."""
    net, root, identifier = ledger
    settings.LIVE_HEARTBEAT_SECONDS = 60.0

    async def scenario() -> None:
        communicator, snapshot = await connected(f"/ws/batches/{identifier}/", session=session)
        await asyncio.sleep(7)
        assert await communicator.receive_nothing(timeout=0.1)
        await sync_to_async(submit)(net, root, 2)
        change = await communicator.receive_json_from(timeout=TIMEOUT)
        assert (change["type"], change["seq"], change["kind"]) == (
            "change",
            snapshot["seq"] + 1,
            "signature.accepted",
        )
        await communicator.disconnect()

    run(scenario)


def test_it_sends_nothing_for_a_rolled_back_signature(ledger, session):
    net, root, identifier = ledger

    def submit_then_roll_back() -> None:
        with contextlib.suppress(RolledBack), transaction.atomic():
            submit(net, root, operator=1)
            raise RolledBack

    async def scenario() -> None:
        communicator, snapshot = await connected(f"/ws/batches/{identifier}/", session=session)
        await sync_to_async(submit_then_roll_back)()
        assert await communicator.receive_nothing(timeout=0.5)
        # The rolled-back one did not even take a number: the next committed change is exactly the next.
        result = await sync_to_async(submit)(net, root, 0)
        change = await communicator.receive_json_from(timeout=TIMEOUT)
        assert change["seq"] == snapshot["seq"] + 1
        assert change["data"]["signature_id"] == result.signature_id
        await communicator.disconnect()

    run(scenario)
    assert Signature.objects.count() == 1


def test_it_sends_a_fresh_snapshot_when_the_sequence_skips(ledger, session):
    net, root, identifier = ledger
    group = batch_group(identifier)
    counter = redis.Redis.from_url(settings.REDIS_URL)
    body = signed_response(net, root=root, operator=3)
    signature = signed_response_parse(json.dumps(body).encode()).signature

    def commit_and_lose_its_message() -> None:
        # Stored, and its message numbered, but the message never reaches the socket.
        Signature.objects.create(
            batch_identifier=identifier,
            batch_merkle_root=body["batchMerkleRoot"],
            sender_address=body["senderAddress"],
            operator_id=body["operatorId"],
            signature_x=f"0x{signature.x:064x}",
            signature_y=f"0x{signature.y:064x}",
        )
        counter.incr(seq_key(group))

    def change(seq: int, kind: str) -> dict[str, Any]:
        epoch = counter.get(EPOCH_KEY)
        assert isinstance(epoch, bytes)
        return {
            "type": "live.change",
            "epoch": epoch.decode(),
            "seq": seq,
            "kind": kind,
            "batch": identifier,
            "operator": None,
            "data": {},
        }

    async def scenario() -> None:
        communicator, snapshot = await connected(f"/ws/batches/{identifier}/", session=session)
        assert snapshot["data"]["signers"] == []
        await sync_to_async(commit_and_lose_its_message)()
        # The next message arrives, numbered past the lost one: the socket repairs the gap with a snapshot.
        layer = get_channel_layer()
        skipped = counter.incr(seq_key(group))
        assert skipped == snapshot["seq"] + 2
        await layer.group_send(group, change(skipped, "progress"))
        repaired = await communicator.receive_json_from(timeout=TIMEOUT)
        assert repaired["type"] == "snapshot"
        assert repaired["seq"] == skipped
        assert [(s["operator_id"], s["status"]) for s in repaired["data"]["signers"]] == [
            (body["operatorId"], "pending")
        ]
        # A message the snapshot already covers is dropped; the next in line is forwarded.
        await layer.group_send(group, change(skipped, "covered"))
        assert counter.incr(seq_key(group)) == skipped + 1
        await layer.group_send(group, change(skipped + 1, "next"))
        following = await communicator.receive_json_from(timeout=TIMEOUT)
        assert (following["type"], following["kind"], following["seq"]) == ("change", "next", skipped + 1)
        await communicator.disconnect()

    run(scenario)


def test_it_sends_a_fresh_snapshot_when_the_client_asks_to_resync(ledger, session):
    net, root, identifier = ledger

    async def scenario() -> None:
        communicator, snapshot = await connected(f"/ws/batches/{identifier}/", session=session)
        assert snapshot["data"]["pending_stake"] == "0"
        await communicator.send_to(text_data="not json")  # ignored, and the socket stays usable
        await communicator.send_json_to({"type": "resync"})
        again = await communicator.receive_json_from(timeout=TIMEOUT)
        assert again == snapshot
        await sync_to_async(submit)(net, root, 0)
        await communicator.receive_json_from(timeout=TIMEOUT)  # the change itself
        await communicator.send_json_to({"type": "resync"})
        fresh = await communicator.receive_json_from(timeout=TIMEOUT)
        assert fresh["type"] == "snapshot"
        assert fresh["seq"] == snapshot["seq"] + 1
        assert fresh["data"]["pending_stake"] == str(10 * 10**18)
        await communicator.disconnect()

    run(scenario)


def test_it_refuses_a_visitor_who_is_not_logged_in(ledger):
    _, _, identifier = ledger

    async def scenario() -> None:
        for path in ("/ws/quorum/", f"/ws/batches/{identifier}/"):
            communicator = socket(path)
            assert await close_code(communicator) == 4401
            await communicator.wait()

    run(scenario)


def test_it_accepts_a_visitor_when_the_dashboard_is_public(ledger, settings):
    _, _, identifier = ledger
    settings.PUBLIC_DASHBOARD = True

    async def scenario() -> None:
        communicator, snapshot = await connected(f"/ws/batches/{identifier}/", session=None)
        assert snapshot["data"]["identifier"] == identifier
        await communicator.disconnect()

    run(scenario)


def test_it_rejects_a_malformed_batch_identifier(ledger, session):
    _, _, identifier = ledger
    malformed = [identifier.upper().replace("0X", "0x"), identifier[:-1], identifier[2:], identifier + "00"]

    async def scenario() -> None:
        for bad in malformed:
            communicator = socket(f"/ws/batches/{bad}/", session=session)
            assert await close_code(communicator) == 4400
            await communicator.wait()

    run(scenario)


def test_it_refuses_a_socket_from_a_foreign_origin(ledger, session):
    async def scenario() -> None:
        communicator = socket("/ws/quorum/", session=session, origin="https://evil.example")
        accepted, _ = await communicator.connect(timeout=TIMEOUT)
        assert not accepted

    run(scenario)


def test_it_sends_null_data_for_a_batch_not_ingested_yet(ledger, session):
    unknown = "0x" + "ab" * 32

    async def scenario() -> None:
        communicator, snapshot = await connected(f"/ws/batches/{unknown}/", session=session)
        assert snapshot == {"type": "snapshot", "seq": 0, "data": None}
        await communicator.disconnect()

    run(scenario)


def test_it_recovers_at_the_next_heartbeat_after_redis_forgot_everything(ledger, session, settings):
    net, root, identifier = ledger
    settings.LIVE_HEARTBEAT_SECONDS = 0.2

    async def scenario() -> None:
        communicator, snapshot = await connected(f"/ws/batches/{identifier}/", session=session)
        assert snapshot["seq"] >= 1
        # A Redis restart: group memberships and sequence counters are gone; the next change is numbered 1.
        await sync_to_async(redis.Redis.from_url(settings.REDIS_URL).flushdb)()
        await sync_to_async(submit)(net, root, 1)
        # The heartbeat finds the counters gone and sends a fresh snapshot: after the submission (numbered 1, in
        # it), or before it (numbered 0), and then the submission follows as change 1.
        repaired = await communicator.receive_json_from(timeout=TIMEOUT)
        assert repaired["type"] == "snapshot"
        if repaired["seq"] == 0:
            follow = await communicator.receive_json_from(timeout=TIMEOUT)
            assert (follow["type"], follow["seq"], follow["kind"]) == ("change", 1, "signature.accepted")
        else:
            assert repaired["seq"] == 1
            assert [s["status"] for s in repaired["data"]["signers"]] == ["pending"]
        # Back in the group, numbered from the new counter.
        await sync_to_async(submit)(net, root, 2)
        change = await communicator.receive_json_from(timeout=TIMEOUT)
        assert (change["type"], change["seq"], change["kind"]) == ("change", 2, "signature.accepted")
        await communicator.disconnect()

    run(scenario)


def test_it_resyncs_at_a_heartbeat_when_the_last_message_was_lost(ledger, session, settings):
    _, _, identifier = ledger
    settings.LIVE_HEARTBEAT_SECONDS = 0.2
    counter = redis.Redis.from_url(settings.REDIS_URL)

    async def scenario() -> None:
        communicator, snapshot = await connected(f"/ws/batches/{identifier}/", session=session)
        # Numbered, never delivered, and nothing follows it: only the heartbeat can notice.
        await sync_to_async(counter.incr)(seq_key(batch_group(identifier)))
        repaired = await communicator.receive_json_from(timeout=TIMEOUT)
        assert (repaired["type"], repaired["seq"]) == ("snapshot", snapshot["seq"] + 1)
        await communicator.disconnect()

    run(scenario)
