"""The devnet operator process against a real anvil chain, a real batch data server and a stand-in receiver."""

from __future__ import annotations

import copy
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from bls import G1Point, keypair_from_secret, verify
from controlplane.netrpc import Outcome, RpcServer, rpc_serve
from devnet import contracts
from devnet.anvil import free_port
from devnet.batcher import BatchStore, serve_batches
from devnet.batches import make_batch
from devnet.faultproxy import FaultProxy
from devnet.operator import OperatorNode, OperatorTiming, parse_control_request
from intake.wire import METHOD, signed_response_from_gob
from tests.chain_fixtures import Net, net_deploy

TOKEN = "control-token-{index}"


# ------------------------------------------------------------------------------------------------ helpers


@dataclass
class Receiver:
    """A stand-in intake/aggregator: records every POST and answers ``statuses`` in turn, then ``status``."""

    status: int = 202
    statuses: list[int] = field(default_factory=list)
    posts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.posts.append((self.path, json.loads(body)))
                status = receiver.statuses.pop(0) if receiver.statuses else receiver.status
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def roots(self) -> list[str]:
        return [body["batchMerkleRoot"] for _, body in self.posts]


def wait_until(condition: Callable[[], Any], *, timeout: float = 5.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


@dataclass
class Env:
    net: Net
    store: BatchStore
    data_url: str
    receiver: Receiver
    nodes: list[OperatorNode] = field(default_factory=list)

    def state(self) -> dict[str, Any]:
        state = copy.deepcopy(self.net.state)
        for index, operator in enumerate(state["operators"]):
            operator["port"] = free_port()
            operator["control_token"] = TOKEN.format(index=index)
        state["aggregator"] = {"url": self.receiver.url}
        state["control_plane_url"] = self.receiver.url
        state["operator_wire"] = "http"  # the stand-in receiver speaks HTTP; gob has tests of its own below
        state["operator_poll_interval"] = 0.05
        return state

    def operator(
        self,
        *,
        index: int = 0,
        direct: bool = False,
        rpc_url: str | None = None,
        wait: bool = True,
        **timing: Any,
    ) -> OperatorNode:
        state = self.state()
        node = OperatorNode(
            state=state,
            index=index,
            direct=direct,
            rpc_url=rpc_url,
            timing=OperatorTiming.from_state(state, **timing),
        )
        self.nodes.append(node.start())
        if wait:  # tasks created from here on are the node's to follow
            assert wait_until(lambda: node.following_from is not None), "the operator never reached the chain"
        return node

    def task(self, *, seed: int, invalid: bool = False) -> dict[str, str]:
        batch = make_batch(rng=random.Random(seed), proofs=3, invalid=invalid)
        root = self.store.put(batch)
        pointer = f"{self.data_url}/batches/{root}.json"
        contracts.create_task(
            self.net.w3,
            service_manager=self.net.service_manager,
            batcher=self.net.account("batcher"),
            batch_merkle_root=batch.merkle_root,
            data_pointer=pointer,
            fee_limit=10**15,
        )
        sender = self.net.account("batcher").address.lower()
        return {"batchMerkleRoot": root, "senderAddress": sender, "batchDataPointer": pointer}


@pytest.fixture(scope="module")
def net(module_anvil) -> Net:
    return net_deploy(module_anvil, operators=3, seed="operator-tests")


@pytest.fixture
def env(net: Net, tmp_path: Path) -> Iterator[Env]:
    store = BatchStore(tmp_path / "batches")
    port = free_port()
    data_server = serve_batches(store=store, port=port)
    receiver = Receiver().start()
    environment = Env(net=net, store=store, data_url=f"http://127.0.0.1:{port}", receiver=receiver)
    try:
        yield environment
    finally:
        for node in environment.nodes:
            node.stop()
        receiver.stop()
        data_server.shutdown()
        data_server.server_close()


def get(node: OperatorNode, path: str) -> requests.Response:
    return requests.get(node.url + path, timeout=5)


def control(
    node: OperatorNode, body: Any, *, token: str | None = None, raw: bytes | None = None
) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else json.dumps(body).encode()
    return requests.post(node.url + "/control/verify", data=data, headers=headers, timeout=5)


def metrics(node: OperatorNode) -> dict[str, float]:
    values = {}
    for line in get(node, "/metrics").text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name.split("{")[0]] = float(value)
    return values


# ------------------------------------------------------------------------------------------------- signing


def test_it_signs_a_valid_batch_and_sends_aligneds_response(env: Env) -> None:
    node = env.operator(index=1)
    task = env.task(seed=101)

    assert wait_until(lambda: env.receiver.posts, timeout=3), "no signed response within 3 s"
    path, body = env.receiver.posts[0]
    assert path == "/api/v1/signatures"
    assert set(body) == {
        "batchMerkleRoot",
        "senderAddress",
        "batchIdentifierHash",
        "blsSignature",
        "operatorId",
    }
    assert body["batchMerkleRoot"] == task["batchMerkleRoot"]
    assert body["senderAddress"] == task["senderAddress"]
    identifier = contracts.batch_identifier(
        batch_merkle_root=bytes.fromhex(task["batchMerkleRoot"][2:]), sender=task["senderAddress"]
    )
    assert body["batchIdentifierHash"] == "0x" + identifier.hex()
    keypair = keypair_from_secret(int(env.net.state["operators"][1]["bls_secret"], 16))
    assert body["operatorId"] == env.net.state["operators"][1]["operator_id"] == node.operator_id
    assert set(body["blsSignature"]) == {"X", "Y"}
    assert all(v == v.lower() and v.startswith("0x") for v in body["blsSignature"].values())
    signature = G1Point.from_hex(body["blsSignature"])
    assert verify(public_key_g2=keypair.public_key_g2, message=identifier, signature=signature)

    counters = wait_until(lambda: (c := node.counters())["responses_sent"] == 1 and c)
    assert counters["batches_seen"] == 1
    assert counters["batches_signed"] == 1
    assert counters["batches_refused"] == 0


def test_it_refuses_a_batch_with_an_invalid_proof_and_sends_nothing(env: Env) -> None:
    node = env.operator()
    env.task(seed=202, invalid=True)
    valid = env.task(seed=203)

    # The valid batch created after it is signed, so the invalid one was looked at and refused by then.
    assert wait_until(lambda: env.receiver.posts, timeout=3)
    assert wait_until(lambda: node.counters()["batches_refused"] == 1)
    assert env.receiver.roots() == [valid["batchMerkleRoot"]]
    counters = node.counters()
    assert counters["batches_seen"] == 2
    assert counters["batches_signed"] == 1
    assert metrics(node)["eigen_performance_score"] == 100  # rightly refusing is doing the job


def test_it_follows_only_from_its_start_block_and_catches_up_when_asked(env: Env) -> None:
    before = env.task(seed=301)
    node = env.operator()
    after = env.task(seed=302)

    assert wait_until(lambda: env.receiver.posts, timeout=3)
    time.sleep(0.2)  # a few more polls: the earlier task must stay unseen
    assert env.receiver.roots() == [after["batchMerkleRoot"]]
    assert node.counters()["batches_seen"] == 1

    answer = control(node, {"batches": [before, after]}, token=TOKEN.format(index=0))
    assert answer.status_code == 202
    assert answer.json() == {
        "accepted": 1,
        "skipped": 1,
        "refused": [],
    }  # `after` was signed already in this life
    assert wait_until(lambda: len(env.receiver.posts) == 2, timeout=3)
    assert env.receiver.roots() == [after["batchMerkleRoot"], before["batchMerkleRoot"]]

    # A fresh process (a restart) re-signs on request: same deterministic signature, the control plane dedupes.
    node.stop()
    env.nodes.remove(node)
    again = env.operator(index=0)
    assert control(again, {"batches": [before]}, token=TOKEN.format(index=0)).json() == {
        "accepted": 1,
        "skipped": 0,
        "refused": [],
    }
    assert wait_until(lambda: len(env.receiver.posts) == 3, timeout=3)
    assert env.receiver.posts[2][1] == env.receiver.posts[1][1]


# ------------------------------------------------------------------------------------------------- sending


def test_it_direct_mode_gives_up_after_its_tries(env: Env) -> None:
    env.receiver.statuses = [404]  # the aggregator does not know the task yet: retried like any failure
    env.receiver.status = 503
    node = env.operator(direct=True, direct_retry_interval=0.02, direct_max_tries=4)
    task = env.task(seed=401)

    assert wait_until(lambda: node.counters()["responses_abandoned"] == 1, timeout=3)
    time.sleep(0.1)
    assert [path for path, _ in env.receiver.posts] == ["/signatures"] * 4
    assert env.receiver.roots() == [task["batchMerkleRoot"]] * 4
    counters = node.counters()
    assert counters["responses_failed"] == 4
    assert counters["responses_sent"] == 0
    values = metrics(node)
    assert values["devnet_operator_responses_abandoned_total"] == 1
    assert values["eigen_performance_score"] == 0


def test_it_normal_mode_retries_until_accepted_and_gives_up_on_a_refusal(env: Env) -> None:
    env.receiver.statuses = [503, 429, 202, 400]
    node = env.operator(backoff_base=0.01, backoff_cap=0.02)
    env.task(seed=501)
    assert wait_until(lambda: node.counters()["responses_sent"] == 1, timeout=3)
    assert len(env.receiver.posts) == 3

    env.task(seed=502)  # answered 400: a refusal is final
    assert wait_until(lambda: node.counters()["responses_abandoned"] == 1, timeout=3)
    time.sleep(0.1)
    assert len(env.receiver.posts) == 4
    assert node.counters()["responses_failed"] == 3


def test_it_a_backed_up_send_queue_makes_the_signer_partially_healthy(env: Env) -> None:
    env.receiver.status = 503
    node = env.operator(backoff_base=0.05, backoff_cap=0.05, send_backlog_degraded=1)
    env.task(seed=601)
    assert wait_until(lambda: get(node, "/eigen/node/services/batch-signer/health").status_code == 206)
    assert get(node, "/eigen/node/health").status_code == 206
    assert get(node, "/eigen/node/services/chain-follower/health").status_code == 200
    env.receiver.status = 202
    assert wait_until(lambda: get(node, "/eigen/node/health").status_code == 200, timeout=3)
    assert metrics(node)["devnet_operator_send_queue"] == 0


# ------------------------------------------------------------------------------------------------- node API


def test_it_node_api_shapes(env: Env) -> None:
    node = env.operator(index=2)

    answer = get(node, "/eigen/node")
    assert answer.status_code == 200
    name = env.net.state["operators"][2]["name"]
    assert answer.json() == {"node_name": name, "spec_version": "v0.0.1", "node_version": "0.1.0"}

    health = get(node, "/eigen/node/health")
    assert health.status_code == 200
    assert health.json() == {"status": "healthy", "reasons": []}

    services = get(node, "/eigen/node/services")
    assert services.status_code == 200
    listed = services.json()["services"]
    assert [s["id"] for s in listed] == ["chain-follower", "batch-signer"]
    for service in listed:
        assert set(service) == {"id", "name", "description", "status"}
        assert service["status"] == "Up"
        assert get(node, f"/eigen/node/services/{service['id']}/health").status_code == 200

    missing = get(node, "/eigen/node/services/nope/health")
    assert missing.status_code == 404
    assert "error" in missing.json()
    assert get(node, "/nothing").status_code == 404


def test_it_health_follows_the_chain_connection(env: Env) -> None:
    with FaultProxy(env.net.anvil.url, fail_methods={"eth_blockNumber", "eth_getLogs"}) as proxy:
        node = env.operator(rpc_url=proxy.url, unhealthy_after=0.6)
        assert get(node, "/eigen/node/health").status_code == 200

        proxy.fail_first = 10**6  # the chain "goes away"
        assert wait_until(lambda: get(node, "/eigen/node/health").status_code == 206)
        assert get(node, "/eigen/node/services/chain-follower/health").status_code == 206
        assert wait_until(lambda: get(node, "/eigen/node/health").status_code == 503)
        statuses = {s["id"]: s["status"] for s in get(node, "/eigen/node/services").json()["services"]}
        assert statuses == {"chain-follower": "Down", "batch-signer": "Up"}

        # A task created during the outage is picked up once the chain is back: the follower never gave up.
        task = env.task(seed=701)
        proxy.fail_first = 0
        assert wait_until(lambda: get(node, "/eigen/node/health").status_code == 200, timeout=3)
        assert wait_until(lambda: env.receiver.roots() == [task["batchMerkleRoot"]], timeout=3)
        assert metrics(node)["devnet_operator_chain_poll_failures_total"] >= 3


def test_it_a_node_that_never_reached_the_chain_is_initializing_then_unhealthy(env: Env) -> None:
    node = env.operator(rpc_url=f"http://127.0.0.1:{free_port()}", wait=False, unhealthy_after=0.5)
    assert get(node, "/eigen/node/health").status_code == 206
    statuses = {s["id"]: s["status"] for s in get(node, "/eigen/node/services").json()["services"]}
    assert statuses["chain-follower"] == "Initializing"
    assert wait_until(lambda: get(node, "/eigen/node/health").status_code == 503, timeout=3)


def test_it_metrics_in_prometheus_text_format(env: Env) -> None:
    node = env.operator()
    env.task(seed=801)
    assert wait_until(lambda: node.counters()["responses_sent"] == 1, timeout=3)

    answer = get(node, "/metrics")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE eigen_performance_score gauge" in answer.text
    assert 'eigen_performance_score{avs_name="aligned-devnet"} 100' in answer.text
    values = metrics(node)
    for name, value in {
        "devnet_operator_batches_seen_total": 1,
        "devnet_operator_batches_signed_total": 1,
        "devnet_operator_batches_refused_total": 0,
        "devnet_operator_responses_sent_total": 1,
        "devnet_operator_responses_failed_total": 0,
        "devnet_operator_responses_abandoned_total": 0,
    }.items():
        assert values[name] == value, name
        assert f"# TYPE {name} counter" in answer.text


# ------------------------------------------------------------------------------------------------- control


def test_it_control_endpoint_authenticates_and_validates(env: Env) -> None:
    node = env.operator()
    good: dict[str, Any] = {"batches": []}

    for token in (None, "wrong", TOKEN.format(index=1)):
        answer = control(node, good, token=token)
        assert answer.status_code == 401
        assert answer.json() == {"error": "missing or wrong bearer token"}
    token = TOKEN.format(index=0)
    assert control(node, good, token=token).json() == {"accepted": 0, "skipped": 0, "refused": []}

    item = {
        "batchMerkleRoot": "0x" + "ab" * 32,
        "senderAddress": "0x" + "cd" * 20,
        "batchDataPointer": "http://x/y",
    }
    cases: list[tuple[Any, bytes | None, str]] = [
        (None, b"not json", "not JSON"),
        ([], None, "JSON object"),
        ({}, None, '"batches" must be a list'),
        ({"batches": [1]}, None, "batches[0] must be an object"),
        ({"batches": [{**item, "batchMerkleRoot": "0x12"}]}, None, "batches[0].batchMerkleRoot"),
        ({"batches": [item, {**item, "senderAddress": None}]}, None, "batches[1].senderAddress"),
        ({"batches": [{**item, "batchDataPointer": "file:///etc/passwd"}]}, None, "batchDataPointer"),
        ({"batches": [item] * 101}, None, "at most 100"),
    ]
    for body, raw, needle in cases:
        answer = control(node, body, token=token, raw=raw)
        assert answer.status_code == 400, needle
        assert needle in answer.json()["error"]

    too_big = control(node, None, token=token, raw=b" " * (64 * 1024 + 1))
    assert too_big.status_code == 413
    assert node.counters()["batches_seen"] == 0


def test_it_control_request_for_a_bad_pointer_is_refused_and_can_be_retried(env: Env) -> None:
    node = env.operator(download_attempts=1)
    batch = make_batch(rng=random.Random(901), proofs=2)
    root = "0x" + batch.merkle_root.hex()
    item = {
        "batchMerkleRoot": root,
        "senderAddress": env.net.account("batcher").address.lower(),
        "batchDataPointer": f"{env.data_url}/batches/{root}.json",
    }
    token = TOKEN.format(index=0)
    assert control(node, {"batches": [item]}, token=token).status_code == 202
    assert wait_until(lambda: node.counters()["batch_download_failures"] == 1)
    assert env.receiver.posts == []

    env.store.put(batch)  # the data shows up: asking again now signs it
    # A download failure is this node's problem, not the batch's: it is checked again, not reported as refused.
    assert control(node, {"batches": [item]}, token=token).json() == {
        "accepted": 1,
        "skipped": 0,
        "refused": [],
    }
    assert wait_until(lambda: env.receiver.roots() == [root], timeout=3)


def test_it_parse_control_request_normalises_hex() -> None:
    tasks = parse_control_request(
        json.dumps(
            {
                "batches": [
                    {
                        "batchMerkleRoot": "0x" + "AB" * 32,
                        "senderAddress": "0x" + "CD" * 20,
                        "batchDataPointer": "https://example.org/b.json",
                        "taskCreatedBlock": 7,
                    }
                ]
            }
        ).encode()
    )
    assert [(t.root, t.sender, t.source) for t in tasks] == [("0x" + "ab" * 32, "0x" + "cd" * 20, "control")]


# ------------------------------------------------------------------------------------------------ process


def test_it_run_operator_serves_until_sigterm(env: Env, tmp_path: Path) -> None:
    state = env.state()
    state_file = tmp_path / "devnet.json"
    state_file.write_text(json.dumps(state))
    script = (
        "import django, json, sys; django.setup(); "
        "from devnet.operator import run_operator; "
        "run_operator(state=json.load(open(sys.argv[1])), index=0, direct=False)"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(state_file)],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{state['operators'][0]['port']}/eigen/node/health"

    def healthy() -> bool:
        try:
            return requests.get(url, timeout=1).status_code == 200
        except requests.RequestException:
            return False

    try:
        assert wait_until(healthy, timeout=15, interval=0.1), "the operator process never became healthy"
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
        assert time.monotonic() - started < 2.5
        assert b"stopped" in (process.stderr.read() if process.stderr else b"")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@dataclass
class RpcReceiver:
    """A stand-in net/rpc aggregator (or aggregator_rpc): records every signed task response and answers each
    with ``answers`` in turn (an int reply, or a str error), then ``answer``."""

    answer: int | str = 0
    answers: list[int | str] = field(default_factory=list)
    calls: list[Any] = field(default_factory=list)

    def method(self, argument: Any) -> Outcome:
        self.calls.append(argument)
        answer = self.answers.pop(0) if self.answers else self.answer
        return Outcome(error=answer) if isinstance(answer, str) else Outcome(reply=answer)


@pytest.fixture
def rpc_receiver() -> Iterator[tuple[RpcReceiver, RpcServer]]:
    receiver = RpcReceiver()
    server, thread = rpc_serve(host="127.0.0.1", port=0, methods_for=lambda _: {METHOD: receiver.method})
    yield receiver, server
    server.shutdown()
    server.server_close()
    thread.join(5)


def _gob_operator(env: Env, server: RpcServer, *, direct: bool, **timing: Any) -> OperatorNode:
    state = env.state()
    state["operator_wire"] = "gob"
    state["aggregator"] = {"url": env.receiver.url, "rpc_address": server.address}
    state["control_plane_rpc"] = server.address
    node = OperatorNode(
        state=state, index=0, direct=direct, timing=OperatorTiming.from_state(state, **timing)
    )
    env.nodes.append(node.start())
    assert wait_until(lambda: node.following_from is not None), "the operator never reached the chain"
    return node


def test_it_sends_over_gob_and_retries_an_error_until_the_control_plane_stores_it(
    env: Env, rpc_receiver: tuple[RpcReceiver, RpcServer], tmp_path: Path
) -> None:
    receiver, server = rpc_receiver
    receiver.answers = ["storage temporarily unavailable; retry"]
    node = _gob_operator(env, server, direct=False, backoff_base=0.01, backoff_cap=0.02)
    node.acks_path = tmp_path / "acks.jsonl"
    task = env.task(seed=901)
    assert wait_until(lambda: node.counters()["responses_sent"] == 1, timeout=5)
    assert len(receiver.calls) == 2
    sent = signed_response_from_gob(receiver.calls[-1])
    assert (sent.batch_merkle_root, sent.operator_id) == (task["batchMerkleRoot"], node.operator_id)
    ack = json.loads(node.acks_path.read_text())
    assert (ack["batchIdentifierHash"], ack["status"]) == (sent.batch_identifier, "accepted")

    receiver.answers = ["refused (operatorId): operatorId is not a registered operator"]
    env.task(seed=902)  # a refusal is final
    assert wait_until(lambda: node.counters()["responses_abandoned"] == 1, timeout=5)
    assert node.counters()["responses_failed"] == 2


def test_it_direct_over_gob_ignores_the_reply_as_upstream_does(
    env: Env, rpc_receiver: tuple[RpcReceiver, RpcServer]
) -> None:
    receiver, server = rpc_receiver
    receiver.answers = ["invalid response: nil signature", 1]  # an error is retried; a reply of 1 is "sent"
    node = _gob_operator(env, server, direct=True, direct_retry_interval=0.02, direct_max_tries=4)
    env.task(seed=903)
    assert wait_until(lambda: node.counters()["responses_sent"] == 1, timeout=5)
    assert len(receiver.calls) == 2
    assert node.counters()["responses_failed"] == 1

    receiver.answer = "no aggregator here"
    env.task(seed=904)
    assert wait_until(lambda: node.counters()["responses_abandoned"] == 1, timeout=5)
    assert len(receiver.calls) == 2 + 4  # upstream's tries, then the response is dropped
