"""Change messages from the real services, as the channel layer (real Redis) delivers them once committed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

from dashboard.live import publish
from dashboard.live.notify import BATCH_MESSAGES_PER_CHUNK
from dashboard.live.publish import OUTBOX_KEY, QUORUM_GROUP, batch_group, seq_key
from dashboard.live.relay import live_relay_ensure
from devnet.anvil import free_port
from intake.models import Signature
from intake.parse import signed_response_parse
from intake.services import signature_submit
from intake.verify import signatures_verify_batch
from ledger.models import Batch
from liveness.models import OperatorState
from liveness.services import operator_liveness_record
from progress.models import BatchProgress
from progress.services import progress_refresh_pending
from recovery.models import RecoveryKind
from recovery.services.runs import recovery_run_start
from tests.chain_fixtures import Net, net_deploy, signed_response

pytestmark = pytest.mark.django_db(transaction=True)

ETH = 10**18


@pytest.fixture(autouse=True)
def clean_redis():
    redis.Redis.from_url(settings.REDIS_URL).flushdb()


@pytest.fixture
def ledger(anvil) -> tuple[Net, bytes, str]:
    net = net_deploy(anvil, operators=4)  # stakes 10, 20, 30, 40 ETH
    root = net.create_task(seed=81)
    net.ingester().sync_once()
    return net, root, Batch.objects.get().identifier


def published(
    action: Callable[[], Any], *, groups: Sequence[str] = (QUORUM_GROUP,), quiet: bool = False
) -> list[dict[str, Any]]:
    """Run ``action`` (sync, on this thread) and return every message the groups received for it, in order.

    Waits up to 10 s for the first message (a loaded machine delays the relay), then until none comes for
    1 s; with ``quiet`` (nothing is expected) the first wait is 1 s too.
    """

    async def scenario() -> list[dict[str, Any]]:
        # What earlier steps sent is not this action's.
        await sync_to_async(redis.Redis.from_url(settings.REDIS_URL).delete)(OUTBOX_KEY)
        live_relay_ensure()
        layer = get_channel_layer()
        channel = await layer.new_channel()
        for group in groups:
            await layer.group_add(group, channel)
        await sync_to_async(action)()
        messages: list[dict[str, Any]] = []
        while True:
            wait = 1.0 if messages or quiet else 10.0
            try:
                messages.append(await asyncio.wait_for(layer.receive(channel), wait))
            except TimeoutError:
                return messages

    return async_to_sync(scenario)()


def kinds(messages: list[dict[str, Any]]) -> list[str]:
    return [m["kind"] for m in messages]


def submit(net: Net, root: bytes, operator: int) -> None:
    body = json.dumps(signed_response(net, root=root, operator=operator)).encode()
    signature_submit(response=signed_response_parse(body))


def test_it_numbers_the_messages_of_each_group_without_gaps(ledger):
    net, root, identifier = ledger

    def all_four() -> None:
        for i in range(4):
            submit(net, root, i)

    messages = published(all_four, groups=[batch_group(identifier)])
    assert kinds(messages) == ["signature.accepted"] * 4
    # batch.created (at ingest) was number 1 of this batch's group.
    assert [m["seq"] for m in messages] == [2, 3, 4, 5]
    assert [m["data"]["stake"] for m in messages] == [str(n * 10 * ETH) for n in (1, 2, 3, 4)]


def test_it_announces_progress_and_quorum_when_verified_signatures_reach_it(ledger):
    net, root, identifier = ledger
    for i in (1, 2, 3):
        submit(net, root, i)
    messages = published(lambda: signatures_verify_batch(batch_identifier=identifier))
    # A verified signature is the operator's sign of life: the overview hears each one is up, first.
    assert kinds(messages) == ["operator.state"] * 3 + ["signature.verified"] * 3 + [
        "progress",
        "quorum.reached",
    ]
    assert {m["data"]["state"] for m in messages[:3]} == {"up"}
    messages = messages[3:]
    assert [m["data"]["stake"] for m in messages[:3]] == [str(n * ETH) for n in (20, 30, 40)]
    progress = BatchProgress.objects.get(batch__identifier=identifier)
    data = messages[3]["data"]
    assert messages[3]["batch"] == identifier
    assert data["signed_stake"] == str(progress.signed_stake) == str(90 * ETH)
    assert data["total_stake"] == str(100 * ETH)
    assert data["pending_stake"] == "0"
    assert data["signed_percent"] == 90.0
    assert data["quorum_reached"] is True
    assert progress.quorum_reached_at is not None
    assert data["quorum_reached_at"] == progress.quorum_reached_at.isoformat()
    assert messages[4]["data"]["quorum_reached_at"] == data["quorum_reached_at"]
    # The periodic refresh of pending batches is silent while nothing moves.
    assert published(progress_refresh_pending, quiet=True) == []


def test_it_announces_a_forgery_without_striking_out_the_genuine_signer(ledger):
    net, root, identifier = ledger
    forged = signed_response(net, root=root, operator=0, wrong_key=True)
    for body, source in (
        (forged, "203.0.113.66"),
        (signed_response(net, root=root, operator=0), "192.0.2.1"),
    ):
        signature_submit(response=signed_response_parse(json.dumps(body).encode()), source=source)
    messages = published(
        lambda: signatures_verify_batch(batch_identifier=identifier), groups=[batch_group(identifier)]
    )
    # Rejections first; the first refresh also records the batch's progress.
    assert kinds(messages) == ["signature.invalid", "signature.verified", "progress"]
    invalid, verified, progress = (m["data"] for m in messages)
    assert messages[0]["operator"] == messages[1]["operator"] == forged["operatorId"]
    assert "does not verify" in invalid["reason"]
    assert invalid["signer_status"] == "verified"  # the operator's genuine signature counts
    assert invalid["stake"] == verified["stake"] == str(10 * ETH)
    assert (progress["signed_stake"], progress["total_stake"]) == (str(10 * ETH), str(100 * ETH))


def test_it_announces_batches_created_and_verified_on_chain(ledger):
    net, _, identifier = ledger
    new_root = net.create_task(seed=82)
    messages = published(lambda: net.ingester().sync_once())
    assert kinds(messages) == ["batch.created"]
    created = messages[0]
    new_identifier = Batch.objects.exclude(identifier=identifier).get().identifier
    assert created["batch"] == new_identifier
    assert created["data"]["status"] == "pending"
    assert created["data"]["created_block"] == Batch.objects.get(identifier=new_identifier).created_block

    net.respond(root=new_root, signers=[2, 3])
    messages = published(lambda: net.ingester().sync_once(), groups=[batch_group(new_identifier)])
    assert kinds(messages) == ["batch.verified"]
    assert (
        messages[0]["data"]["verified_block"] == Batch.objects.get(identifier=new_identifier).verified_block
    )


def test_it_sends_one_summary_for_a_backfill_instead_of_a_message_per_batch(ledger):
    net, _, _ = ledger
    for seed in range(BATCH_MESSAGES_PER_CHUNK + 1):
        net.create_task(seed=100 + seed)
    messages = published(lambda: net.ingester().sync_once())
    assert kinds(messages) == ["ingest.backfill"]
    assert messages[0]["batch"] is None
    assert messages[0]["data"]["batches_created"] == BATCH_MESSAGES_PER_CHUNK + 1


def test_it_announces_an_operator_state_change_with_the_stake_online(ledger):
    net, _, _ = ledger
    operators = [op["operator_id"] for op in net.state["operators"]]

    def probes() -> None:
        for operator_id in operators:
            operator_liveness_record(operator_id=operator_id, state=OperatorState.UP, reason="ok")
        operator_liveness_record(operator_id=operators[3], state=OperatorState.DOWN, reason="refused")
        operator_liveness_record(operator_id=operators[2], state=OperatorState.UP, reason="still ok")

    messages = published(probes)
    assert kinds(messages) == ["operator.state"] * 5  # the repeated "up" changed nothing
    last = messages[-1]
    assert last["operator"] == operators[3]
    assert (last["data"]["previous"], last["data"]["state"]) == ("up", "down")
    assert last["data"]["stake_online_percent"] == 60.0  # 10 + 20 + 30 of 100


def test_it_announces_recovery_runs_and_replay_tasks(ledger):
    _, _, identifier = ledger

    dry = published(
        lambda: recovery_run_start(
            kind=RecoveryKind.REPLAY, scope=identifier, requested_by="ops", dry_run=True
        ),
        groups=[batch_group(identifier)],
    )
    assert kinds(dry) == ["recovery.run"]
    assert dry[0]["data"]["dry_run"] is True
    assert dry[0]["data"]["outcome"].startswith("dry run")

    real = published(
        lambda: recovery_run_start(
            kind=RecoveryKind.REPLAY, scope=identifier, requested_by="ops", dry_run=False
        )
    )
    assert kinds(real) == ["recovery.task", "recovery.run"]
    task = real[0]
    assert (task["batch"], task["data"]["kind"], task["data"]["action"]) == (
        identifier,
        "replay",
        "requested",
    )
    assert task["data"]["status"] == "pending"


def test_it_never_fails_or_delays_a_signature_while_redis_is_unreachable(
    ledger, monkeypatch, caplog, settings
):
    net, root, identifier = ledger
    redis_url = settings.REDIS_URL
    counter = redis.Redis.from_url(redis_url)
    assert counter.get(seq_key(batch_group(identifier))) == b"1"  # batch.created
    # This process's publishing state as it is now comes back after the test, whatever the test does to it.
    monkeypatch.setattr(publish, "_down_until", 0.0)
    monkeypatch.setattr(publish, "_skipped", set())
    monkeypatch.setattr(publish, "_redis", None)
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    caplog.set_level(logging.WARNING, logger="dashboard.live")

    started = time.perf_counter()
    submit(net, root, 0)
    submit(net, root, 1)  # within the pause: not even tried
    elapsed = time.perf_counter() - started
    assert Signature.objects.count() == 2
    assert elapsed < 0.5
    assert caplog.text.count("not sent") == 1

    # Redis is back and the pause is over: the next number skips the lost ones, so every client sees the gap.
    settings.REDIS_URL = redis_url
    publish._redis = None
    publish._down_until = 0.0
    submit(net, root, 2)
    assert counter.get(seq_key(batch_group(identifier))) == b"3"


def test_it_drops_a_message_it_cannot_encode_without_pausing_the_others(monkeypatch):
    monkeypatch.setattr(publish, "_down_until", 0.0)
    monkeypatch.setattr(publish, "_skipped", set())
    assert (
        publish.live_send(groups=[QUORUM_GROUP], message={"kind": "x", "data": {"stake": Decimal(1)}}) is None
    )
    # The loss shows as a gap in the group's numbers; the next message goes out at once.
    assert publish.live_send(groups=[QUORUM_GROUP], message={"kind": "y", "data": {}}) == [2]


def test_it_gives_back_what_a_stopped_relays_thread_pops_afterwards():
    """A relay stopped with its event loop leaves its BLPOP thread behind for up to a second: a message published
    meanwhile must stay in the outbox for the next relay, not vanish with that thread."""
    outbox = redis.Redis.from_url(settings.REDIS_URL)

    async def relay_briefly() -> None:
        live_relay_ensure()
        await asyncio.sleep(0.3)  # its thread is now blocked in BLPOP

    async_to_sync(relay_briefly)()  # the loop ends: the relay is cancelled, its thread still waits
    outbox.rpush(OUTBOX_KEY, b'{"groups": [], "seqs": [], "at": 0}')
    # Until the abandoned thread is gone (its BLPOP timed out or took the message, then it closed its connection).
    deadline = time.monotonic() + 10
    while any(t.name.startswith("live-relay") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the relay's thread never ended"
        time.sleep(0.05)
    assert outbox.llen(OUTBOX_KEY) == 1


def test_it_sends_a_transactions_messages_in_one_round_trip_and_drops_a_rolled_back_savepoints(
    ledger, monkeypatch
):
    _, _, identifier = ledger
    sends: list[int] = []
    real = publish.live_send_many

    def counted(*, messages):
        sends.append(len(messages))
        return real(messages=messages)

    monkeypatch.setattr(publish, "live_send_many", counted)

    def action() -> None:
        with transaction.atomic():
            publish.live_notify(kind="first", batch=identifier)
            with contextlib.suppress(RuntimeError), transaction.atomic():
                publish.live_notify(kind="rolled.back", batch=identifier)
                raise RuntimeError
            publish.live_notify(kind="second", batch=identifier)
            with transaction.atomic():  # released: its message goes with the others
                publish.live_notify(kind="third", batch=identifier)
            publish.live_notify(kind="fourth", batch=identifier)

    messages = published(action, groups=[batch_group(identifier)])
    assert kinds(messages) == ["first", "second", "third", "fourth"]
    assert [m["seq"] for m in messages] == [2, 3, 4, 5]
    # The released savepoint's message opened a hook of its own; the one after it joined that hook.
    assert sends == [2, 2]


_built: list[list[str]] = []


def _kinds_of(items: list[str]) -> list[dict[str, Any]]:
    _built.append(list(items))
    return [{"kind": item, "batch": None, "operator": None, "data": {}} for item in items]


def test_it_builds_merged_messages_of_a_transaction_in_one_call_at_the_place_of_the_first(ledger):
    _built.clear()

    def action() -> None:
        with transaction.atomic():
            publish.live_notify_merged(label="x", item="merged.1", build_many=_kinds_of)
            publish.live_notify(kind="plain")
            publish.live_notify_merged(label="x", item="merged.2", build_many=_kinds_of)
            publish.live_notify_merged(label="x", item="merged.3", build_many=_kinds_of)

    messages = published(action)
    assert _built == [["merged.1", "merged.2", "merged.3"]]
    assert kinds(messages) == ["merged.1", "merged.2", "merged.3", "plain"]
    # Outside a transaction, an item is built and sent at once, on its own.
    messages = published(lambda: publish.live_notify_merged(label="x", item="alone", build_many=_kinds_of))
    assert _built[1:] == [["alone"]]
    assert kinds(messages) == ["alone"]
