"""Operator catch-up: exactly the batches an operator owes, asked through its control endpoint, until signed.

Real anvil chain and ledger; the catch-up runs against a real devnet operator process (in-process threads)
that downloads the batches from a real batch data server and posts its signatures to the control plane's
intake, served by pytest-django's live server.
"""

from __future__ import annotations

import copy
import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import django_rq
import pytest
from django.utils import timezone
from web3.types import RPCEndpoint

from controlplane.network import NetworkConfigError, network_resolve
from devnet import contracts
from devnet.anvil import free_port
from devnet.batcher import BatchStore, serve_batches
from devnet.batches import make_batch
from devnet.network import ecdsa_account, operator_keypair
from devnet.operator import OperatorNode, OperatorTiming
from devnet.state import save_state
from intake.models import BatchRefusal, Signature, SignatureStatus
from ledger.models import Batch, BatchStatus
from liveness.models import OperatorLiveness, OperatorState
from recovery.models import CatchupAsk, RecoveryKind, RecoveryStatus, RecoveryTask
from recovery.services.catchup import (
    catchup_execute,
    catchups_request,
    operator_catchup_batches,
    operator_control_token,
    operator_last_known_good_block,
)
from recovery.services.tasks import Executor, recovery_task_request, recovery_task_run
from tests.chain_fixtures import Net, net_deploy, signed_response

EXECUTORS: dict[str, Executor] = {RecoveryKind.CATCHUP: catchup_execute}


@pytest.fixture(autouse=True)
def clean_queue() -> Iterator[None]:
    queue = django_rq.get_queue("default")
    queue.connection.flushdb()
    yield
    queue.connection.flushdb()


def tokens_resolved(settings: Any, **given: Any) -> dict[str, str]:
    """The tokens as settings resolve them at start-up: the variable's, then the devnet file's."""
    return network_resolve(**given, network_file=settings.DEVNET_FILE).operator_control_tokens


@pytest.fixture(autouse=True)
def isolated(settings: Any, tmp_path: Path) -> None:
    # Never read a developer's devnet file or tokens; no grace, so every owed batch is due at once.
    settings.DEVNET_FILE = tmp_path / "devnet.json"
    settings.OPERATOR_CONTROL_TOKENS = {}
    settings.RECOVERY_CATCHUP_GRACE = 0.0
    settings.AGGREGATOR_TIMEOUT = 2.0


@dataclass
class Env:
    net: Net
    store: BatchStore
    data_url: str
    nodes: list[OperatorNode] = field(default_factory=list)

    def operator_id(self, index: int) -> str:
        return str(self.net.state["operators"][index]["operator_id"]).lower()

    def task(self, *, seed: int, invalid: bool = False) -> tuple[bytes, str]:
        """A batch served by the data server and created on chain: (root, identifier)."""
        batch = make_batch(rng=random.Random(seed), proofs=1, invalid=invalid)
        root = self.store.put(batch)
        contracts.create_task(
            self.net.w3,
            service_manager=self.net.service_manager,
            batcher=self.net.account("batcher"),
            batch_merkle_root=batch.merkle_root,
            data_pointer=f"{self.data_url}/batches/{root}.json",
            fee_limit=10**15,
        )
        sender = self.net.account("batcher").address.lower()
        identifier = contracts.batch_identifier(batch_merkle_root=batch.merkle_root, sender=sender)
        return batch.merkle_root, "0x" + identifier.hex()

    def sign(self, client: Any, *, root: bytes, operator: int, wrong_key: bool = False) -> Signature:
        body = signed_response(self.net, root=root, operator=operator, wrong_key=wrong_key)
        response = client.post("/api/v1/signatures", data=json.dumps(body), content_type="application/json")
        assert response.status_code == 202, response.content
        return Signature.objects.get(id=response.json()["signatureId"])

    def ingest(self) -> None:
        self.net.ingester().sync_once()

    def operator_node(self, *, index: int, token: str, send_url: str) -> OperatorNode:
        """Operator ``index`` as the devnet runs it, at its registered socket, with a control token."""
        state = copy.deepcopy(self.net.state)
        state["operators"][index]["control_token"] = token
        node = OperatorNode(
            state=state,
            index=index,
            send_url=send_url,
            timing=OperatorTiming.from_state(state, poll_interval=0.05, backoff_base=0.05, backoff_cap=0.5),
        )
        self.nodes.append(node.start())
        assert wait_until(lambda: node.following_from is not None), "the operator never reached the chain"
        return node


def wait_until(condition: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


@pytest.fixture
def env(anvil: Any, tmp_path: Path) -> Iterator[Env]:
    net = net_deploy(anvil, operators=3, seed="catchup")  # stakes 1, 2, 3 units
    store = BatchStore(tmp_path / "batches")
    port = free_port()
    server = serve_batches(store=store, port=port)
    environment = Env(net=net, store=store, data_url=f"http://127.0.0.1:{port}")
    try:
        yield environment
    finally:
        for node in environment.nodes:
            node.stop()
        server.shutdown()
        server.server_close()


def run(task_id: int) -> RecoveryTask:
    """Run the task now (as a worker would once it is due) and return its row."""
    # Due before the test's transaction began: inside it, Postgres's now() is the transaction's start.
    RecoveryTask.objects.filter(id=task_id, status=RecoveryStatus.PENDING).update(
        next_attempt_at=timezone.now() - timedelta(hours=1)
    )
    assert recovery_task_run(task_id=task_id, executors=EXECUTORS) is not None
    return RecoveryTask.objects.get(id=task_id)


# ------------------------------------------------------------------------------------------ what is owed


@pytest.mark.django_db
def test_it_owes_exactly_the_pending_batches_without_its_valid_signature(client: Any, env: Env) -> None:
    op0 = env.operator_id(0)
    b1 = env.task(seed=1)  # operator 0 signs it: its last known-good point
    b2 = env.task(seed=2)  # missed while down
    b3 = env.task(seed=3)  # missed while down
    b4 = env.task(seed=4)  # signed right after it came back
    b5 = env.task(seed=5)  # verified on chain without it: no longer matters
    b6 = env.task(seed=6)  # its only signature was found invalid: does not count
    env.net.respond(root=b5[0], signers=[1, 2])
    env.ingest()
    b7 = env.task(seed=7)  # its signature arrived before the batch was ingested (waiting): counts
    assert env.sign(client, root=b7[0], operator=0).status == SignatureStatus.WAITING
    env.ingest()
    assert Signature.objects.get(batch_identifier=b7[1]).status == SignatureStatus.WAITING
    for root, _ in (b1, b4):
        env.sign(client, root=root, operator=0)
    env.sign(client, root=b6[0], operator=0, wrong_key=True)
    Signature.objects.filter(batch_identifier=b6[1]).update(status=SignatureStatus.INVALID)
    env.sign(client, root=b1[0], operator=1)
    assert Batch.objects.get(identifier=b5[1]).status == BatchStatus.VERIFIED

    owed = operator_catchup_batches(operator_id=op0)

    assert [b.identifier for b in owed] == [b2[1], b3[1], b6[1]]
    assert [b.created_block for b in owed] == sorted(b.created_block for b in owed)
    # Signing b4 after the gap does not move the known-good point past the batches it missed.
    created = dict(Batch.objects.values_list("identifier", "created_block"))
    assert operator_last_known_good_block(operator_id=op0) == created[b1[1]]
    assert operator_last_known_good_block(operator_id=op0.upper().replace("0X", "0x")) == created[b1[1]]
    # Operator 1 signed b1 only: it owes every other pending batch; operator 2 never signed anything.
    assert [b.identifier for b in operator_catchup_batches(operator_id=env.operator_id(1))] == [
        b2[1],
        b3[1],
        b4[1],
        b6[1],
        b7[1],
    ]
    assert operator_last_known_good_block(operator_id=env.operator_id(2)) is None
    assert len(operator_catchup_batches(operator_id=env.operator_id(2))) == 6

    # Once every owed batch is signed, nothing is owed and the known-good point is the newest signed batch.
    for root, _ in (b2, b3, b6):
        env.sign(client, root=root, operator=0)
    assert operator_catchup_batches(operator_id=op0) == []
    assert operator_last_known_good_block(operator_id=op0) == max(
        created[i] for i in (b1[1], b2[1], b3[1], b4[1], b6[1])
    )


@pytest.mark.django_db
def test_it_never_asks_an_operator_for_batches_from_before_its_stake(env: Env) -> None:
    old = env.task(seed=51)
    # A fourth operator joins after the batch was created: its signature on it could never count.
    account = ecdsa_account("catchup", "operator-3")
    keypair = operator_keypair("catchup", 3)
    env.net.w3.provider.make_request(RPCEndpoint("anvil_setBalance"), [account.address, hex(10**20)])
    contracts.register_operator(
        env.net.w3, registry=env.net.registry, account=account, keypair=keypair, socket="http://127.0.0.1:1"
    )
    contracts.set_operator_stake(
        env.net.w3,
        registry=env.net.registry,
        owner=ecdsa_account("catchup", "deployer"),
        operator_id=keypair.operator_id,
        stake=10**18,
    )
    new = env.task(seed=52)
    env.ingest()
    newcomer = "0x" + keypair.operator_id.hex()

    assert [b.identifier for b in operator_catchup_batches(operator_id=newcomer)] == [new[1]]
    assert [b.identifier for b in operator_catchup_batches(operator_id=env.operator_id(0))] == [
        old[1],
        new[1],
    ]


def asks(operator_id: str) -> dict[str, int]:
    return dict(CatchupAsk.objects.filter(operator_id=operator_id).values_list("batch_identifier", "asks"))


@pytest.mark.django_db
def test_it_keeps_asking_about_an_owed_batch_each_time_later_and_never_gives_up(
    env: Env, settings: Any
) -> None:
    settings.RECOVERY_CATCHUP_GRACE = 10.0
    settings.RECOVERY_CATCHUP_ASK_CAP = 35.0
    op0 = env.operator_id(0)
    _, identifier = env.task(seed=11)
    env.ingest()
    Batch.objects.update(first_seen_at=timezone.now() - timedelta(hours=1))
    # Asked many times already (the operator never answers with a signature), the last time 30 s ago.
    long_ago = timezone.now() - timedelta(hours=1)
    ask = CatchupAsk.objects.create(
        operator_id=op0, batch_identifier=identifier, asks=50, first_asked_at=long_ago, last_asked_at=long_ago
    )
    assert [b.identifier for b in operator_catchup_batches(operator_id=op0)] == [identifier]

    def ask_again_after(seconds_ago: float) -> RecoveryTask:
        CatchupAsk.objects.filter(id=ask.id).update(
            last_asked_at=timezone.now() - timedelta(seconds=seconds_ago)
        )
        task, _ = recovery_task_request(kind=RecoveryKind.CATCHUP, subject=op0)
        return run(task.id)

    # Spacing after 50 asks is the cap (35 s): 30 s after the last ask it waits ...
    task = ask_again_after(30)
    assert task.status == RecoveryStatus.PENDING
    assert task.last_error == "waiting for 1 asked batches to be signed"
    assert CatchupAsk.objects.get(id=ask.id).asks == 50
    # ... 36 s after, it asks again (nobody listens at the socket here: the ask fails and is retried, not dropped).
    settings.OPERATOR_CONTROL_TOKENS = {op0: "token"}
    task = ask_again_after(36)
    assert task.status == RecoveryStatus.PENDING
    assert "unreachable" in task.last_error
    assert operator_catchup_batches(operator_id=op0), "still owed: never given up"


@pytest.mark.django_db(transaction=True)
def test_it_records_a_batch_the_operator_refuses_on_purpose_and_stops_asking_about_it(
    client: Any, env: Env, settings: Any, live_server: Any
) -> None:
    op0 = env.operator_id(0)
    good = env.task(seed=15)
    bad = env.task(seed=16, invalid=True)  # a proof in it does not verify: an honest operator never signs it
    env.ingest()
    settings.OPERATOR_CONTROL_TOKENS = {op0: "the-token"}
    node = env.operator_node(index=0, token="the-token", send_url=f"{live_server.url}/api/v1/signatures")
    task, _ = recovery_task_request(kind=RecoveryKind.CATCHUP, subject=op0)
    task = run(task.id)
    assert task.last_error == "asked for 2 batches; waiting for their signatures"
    assert asks(op0) == {good[1]: 1, bad[1]: 1}
    assert wait_until(
        lambda: node.counters()["batches_refused"] == 1 and node.counters()["batches_signed"] == 1
    )
    assert wait_until(lambda: Signature.objects.filter(operator_id=op0, batch_identifier=good[1]).exists())

    # Asked again about what it still owes, it answers that it refused the bad batch: recorded, not owed.
    CatchupAsk.objects.update(last_asked_at=timezone.now() - timedelta(hours=1))
    task = run(task.id)
    refusal = BatchRefusal.objects.get(operator_id=op0)
    assert refusal.batch_identifier == bad[1]
    assert "proofs invalid" in refusal.reason
    assert task.result["refused"] == 1
    assert operator_catchup_batches(operator_id=op0) == []
    task = run(task.id)
    assert task.status == RecoveryStatus.DONE
    assert node.counters()["batches_refused"] == 1, "the bad batch was never checked a second time"
    assert asks(op0) == {good[1]: 1, bad[1]: 2}


@pytest.mark.django_db
def test_it_retries_with_a_reason_when_the_operator_cannot_be_reached(
    client: Any, env: Env, settings: Any
) -> None:
    op0 = env.operator_id(0)
    _, identifier = env.task(seed=21)
    env.ingest()
    task, _ = recovery_task_request(kind=RecoveryKind.CATCHUP, subject=op0)

    task = run(task.id)  # no token anywhere
    assert task.status == RecoveryStatus.PENDING
    assert "no control token" in task.last_error
    assert asks(op0) == {}

    # Its registered socket has nobody listening (the node is not started in this test).
    settings.OPERATOR_CONTROL_TOKENS = {op0: "some-token"}
    task = run(task.id)
    assert task.status == RecoveryStatus.PENDING
    assert "unreachable" in task.last_error
    assert "some-token" not in task.last_error
    assert asks(op0) == {}
    assert task.attempts == 2

    # Asked a moment ago (by an earlier run): within the grace it is waited for, not asked again.
    settings.RECOVERY_CATCHUP_GRACE = 60.0
    Batch.objects.update(first_seen_at=timezone.now() - timedelta(minutes=5))
    now = timezone.now()
    CatchupAsk.objects.create(
        operator_id=op0, batch_identifier=identifier, asks=1, first_asked_at=now, last_asked_at=now
    )
    task = run(task.id)
    assert task.status == RecoveryStatus.PENDING
    assert task.last_error == "waiting for 1 asked batches to be signed"
    assert asks(op0) == {identifier: 1}
    assert task.result["outstanding"] == 1


# ----------------------------------------------------------------------------------- against a real operator


@pytest.mark.django_db(transaction=True)
def test_it_a_real_operator_catches_up_in_chunks_and_is_never_asked_twice(
    client: Any, env: Env, settings: Any, live_server: Any, tmp_path: Path
) -> None:
    settings.CATCHUP_CHUNK = 1
    op0 = env.operator_id(0)
    signed_before = env.task(seed=31)
    missed = [env.task(seed=s) for s in (32, 33, 34)]  # created while operator 0 was down
    env.ingest()
    env.sign(client, root=signed_before[0], operator=0)
    node = env.operator_node(index=0, token="the-real-token", send_url=f"{live_server.url}/api/v1/signatures")
    assert [b.identifier for b in operator_catchup_batches(operator_id=op0)] == [i for _, i in missed]
    task, created = recovery_task_request(kind=RecoveryKind.CATCHUP, subject=op0, reason="test")
    assert created

    # A wrong token: the operator refuses, nothing is asked, nothing is done.
    settings.OPERATOR_CONTROL_TOKENS = {op0: "a-wrong-token"}
    task = run(task.id)
    assert task.status == RecoveryStatus.PENDING
    assert "refused the control token (HTTP 401" in task.last_error
    assert asks(op0) == {}
    assert node.counters()["control_requests"] == 0

    # The token from the devnet file (as `devnet up` writes it, read as settings load): one request per batch
    # with CATCHUP_CHUNK=1.
    state = copy.deepcopy(env.net.state)
    state["operators"][0]["control_token"] = "the-real-token"
    save_state(state, settings.DEVNET_FILE)
    settings.OPERATOR_CONTROL_TOKENS = tokens_resolved(settings)
    task = run(task.id)
    assert task.status == RecoveryStatus.PENDING
    assert task.last_error == "asked for 3 batches; waiting for their signatures"
    assert asks(op0) == {i: 1 for _, i in missed}
    assert task.result["outstanding"] == len(missed)
    assert task.result["requests"] == 3
    counters = node.counters()
    assert counters["control_requests"] == 3
    assert counters["batches_seen"] == 3  # only the missed ones: the signed batch was never sent

    # The operator downloads, checks and signs them; its signatures reach the intake through the live server.
    def arrived() -> bool:
        return Signature.objects.filter(
            operator_id=op0, batch_identifier__in=[i for _, i in missed], status=SignatureStatus.PENDING
        ).count() == len(missed)

    assert wait_until(arrived, timeout=15), node.counters()
    task = run(task.id)
    assert task.status == RecoveryStatus.DONE
    assert task.finished_at is not None
    assert task.result["owed"] == 0
    assert node.counters()["control_requests"] == 3

    # Caught up: a new catch-up finds nothing to send and never contacts the operator.
    again, created = recovery_task_request(kind=RecoveryKind.CATCHUP, subject=op0)
    assert created
    again = run(again.id)
    assert again.status == RecoveryStatus.DONE
    assert asks(op0) == {i: 1 for _, i in missed}
    assert node.counters()["control_requests"] == 3
    assert catchups_request() == 2  # operators 1 and 2 (never started) still owe everything; 0 does not


# ---------------------------------------------------------------------------------------------- detection


@pytest.mark.django_db
def test_it_requests_one_catchup_per_lagging_live_operator_idempotently(
    client: Any, env: Env, settings: Any
) -> None:
    op0, op1, op2 = (env.operator_id(i) for i in range(3))
    b1, b2 = env.task(seed=41), env.task(seed=42)
    b3 = env.task(seed=43)  # verified on chain: nobody owes it
    env.net.respond(root=b3[0], signers=[1, 2])
    env.ingest()
    for root, _ in (b1, b2):
        env.sign(client, root=root, operator=1)  # operator 1 is up to date
    env.sign(client, root=b1[0], operator=0)  # operator 0 lacks b2, operator 2 lacks both
    # Operators 0 and 1 answer their probes; operator 2 is down.
    now = timezone.now()
    for op in (op0, op1):
        OperatorLiveness.objects.create(operator_id=op, state=OperatorState.UP, since=now)
    OperatorLiveness.objects.create(operator_id=op2, state=OperatorState.DOWN, since=now)

    settings.RECOVERY_CATCHUP_GRACE = 60.0  # every batch is younger than the grace: it may still sign
    assert catchups_request() == 0

    Batch.objects.update(first_seen_at=now - timedelta(minutes=5))
    assert catchups_request() == 1
    assert list(RecoveryTask.objects.values_list("kind", "subject", "status")) == [
        (RecoveryKind.CATCHUP, op0, RecoveryStatus.PENDING)
    ]
    assert catchups_request() == 0  # idempotent while the task is open

    # Operator 2's liveness is unknown (its row is gone: never probed): it is worth asking too.
    OperatorLiveness.objects.filter(operator_id=op2).delete()
    assert catchups_request() == 1
    # A finished task for operator 0 is requested anew only while it still owes something.
    assert set(RecoveryTask.objects.values_list("subject", flat=True)) == {op0, op2}
    RecoveryTask.objects.filter(subject=op0).update(status=RecoveryStatus.DONE)
    env.sign(client, root=b2[0], operator=0)
    assert catchups_request() == 0
    assert RecoveryTask.objects.filter(subject=op1).count() == 0


# ------------------------------------------------------------------------------------------------ tokens


def test_it_reads_control_tokens_from_settings_then_the_devnet_file(settings: Any) -> None:
    op = "0x" + "ab" * 32
    assert operator_control_token(operator_id=op) is None  # no setting, no devnet file
    assert tokens_resolved(settings) == {}

    save_state(
        {"version": 1, "operators": [{"operator_id": op, "control_token": "from-file"}]}, settings.DEVNET_FILE
    )
    settings.OPERATOR_CONTROL_TOKENS = tokens_resolved(settings)
    assert operator_control_token(operator_id=op.upper().replace("0X", "0x")) == "from-file"
    assert operator_control_token(operator_id="0x" + "cd" * 32) is None

    given = {"operator_control_tokens": json.dumps({op.upper().replace("0X", "0x"): "from-env"})}
    settings.OPERATOR_CONTROL_TOKENS = tokens_resolved(settings, **given)
    assert operator_control_token(operator_id=op) == "from-env"

    for malformed in ("not json", '["a list"]', json.dumps({op: 42}), json.dumps({op: ""})):
        with pytest.raises(NetworkConfigError, match="OPERATOR_CONTROL_TOKENS must be a JSON object"):
            network_resolve(operator_control_tokens=malformed, network_file=settings.DEVNET_FILE)
