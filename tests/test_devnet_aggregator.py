"""The devnet aggregator against a real anvil: tasks from NewBatchV3 or announcements, quorum, respondToTaskV2."""

from __future__ import annotations

import copy
import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from chain.abi import TOPICS
from chain.transactions import Fees
from controlplane.netrpc import Client, RpcError
from devnet import contracts
from devnet.aggregator import AggregatorNode, run_aggregator
from devnet.anvil import free_port
from intake.parse import signed_response_parse
from intake.wire import EMPTY, METHOD, PING, SIGNED_TASK_RESPONSE, signed_response_to_gob
from tests.chain_fixtures import Net, net_deploy, signed_response

ETH = 10**18


@pytest.fixture(scope="module")
def net(module_anvil) -> Net:
    # Stakes 10/20/30/40 ETH: operators 1+3 hold 60% (short of 67%), 1+2+3 hold 90%.
    return net_deploy(module_anvil, operators=4, seed="aggregator")


def _state(net: Net, **settings: Any) -> dict[str, Any]:
    state = copy.deepcopy(net.state)
    port = free_port()
    state["aggregator"] = {"port": port, "url": f"http://127.0.0.1:{port}"}
    state["aggregator_poll_interval"] = 0.1
    state.update(settings)
    return state


@pytest.fixture
def make_node(net: Net) -> Iterator[Callable[..., AggregatorNode]]:
    nodes: list[AggregatorNode] = []

    def make(*, state: dict[str, Any] | None = None, **settings: Any) -> AggregatorNode:
        node = AggregatorNode(state=state or _state(net, **settings))
        node.start()
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.stop()


_seeds = iter(range(1000, 10_000))


def _new_root(net: Net) -> bytes:
    return net.create_task(seed=next(_seeds))


def _post(node: AggregatorNode, path: str, body: dict[str, Any] | bytes) -> requests.Response:
    if isinstance(body, bytes):
        return requests.post(node.url + path, data=body, timeout=10)
    return requests.post(node.url + path, json=body, timeout=10)


def _sign(node: AggregatorNode, net: Net, root: bytes, operator: int, **kwargs: Any) -> requests.Response:
    return _post(node, "/signatures", signed_response(net, root=root, operator=operator, **kwargs))


def _health(node: AggregatorNode) -> dict[str, Any]:
    response = requests.get(node.url + "/health", timeout=10)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def _task(node: AggregatorNode, root: bytes) -> dict[str, Any] | None:
    for task in _health(node)["tasks"]:
        if task["batchMerkleRoot"] == "0x" + root.hex():
            return task
    return None


def _held(node: AggregatorNode, root: bytes) -> dict[str, Any]:
    task = _task(node, root)
    assert task is not None, "the aggregator does not hold this task"
    return task


def _wait(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _identifier(net: Net, root: bytes) -> bytes:
    return contracts.batch_identifier(batch_merkle_root=root, sender=net.account("batcher").address)


def _responded_on_chain(net: Net, root: bytes) -> bool:
    manager = contracts.service_manager_contract(net.w3, net.service_manager)
    return bool(manager.functions.batchesState(_identifier(net, root)).call()[1])


def _verified_logs(net: Net, root: bytes) -> list[Any]:
    return net.w3.eth.get_logs(
        {
            "address": net.w3.to_checksum_address(net.service_manager),
            "fromBlock": 0,
            "toBlock": "latest",
            "topics": [TOPICS["BatchVerified"], "0x" + root.hex()],
        }
    )


def _announce(node: AggregatorNode, net: Net, root: bytes) -> requests.Response:
    block = int(net.w3.eth.get_block("latest")["number"])
    manager = contracts.service_manager_contract(net.w3, net.service_manager)
    block = int(manager.functions.batchesState(_identifier(net, root)).call()[0]) or block
    return _post(
        node,
        "/tasks",
        {
            "batchMerkleRoot": "0x" + root.hex(),
            "senderAddress": net.account("batcher").address,
            "taskCreatedBlock": block,
        },
    )


def test_it_follows_new_batches_and_responds_once_67_percent_signed(net, make_node, caplog):
    caplog.set_level(logging.INFO, logger="devnet.aggregator")
    node = make_node()
    root = _new_root(net)
    task = _wait(lambda: _task(node, root))
    assert task["signers"] == []
    assert task["totalStake"] == str(100 * ETH)
    assert task["batchIdentifierHash"] == "0x" + _identifier(net, root).hex()

    first = _sign(node, net, root, 1)
    assert first.status_code == 200
    assert first.json() == {
        "status": "accepted",
        "bootId": node.boot_id,
        "batchIdentifierHash": task["batchIdentifierHash"],
        "signedStake": str(20 * ETH),
        "totalStake": str(100 * ETH),
    }
    assert _sign(node, net, root, 1).json()["status"] == "duplicate"
    assert _sign(node, net, root, 3).json()["signedStake"] == str(60 * ETH)
    time.sleep(0.5)  # 60% < 67%: nothing may be sent
    assert not _responded_on_chain(net, root)
    assert _held(node, root)["responded"] is False

    third = _sign(node, net, root, 2)
    assert third.json()["status"] == "accepted"
    assert third.json()["signedStake"] == str(90 * ETH)
    _wait(lambda: _responded_on_chain(net, root))
    task = _wait(lambda: (t := _task(node, root)) and t["responded"] and t["txHash"] and t)
    assert sorted(task["signers"]) == task["signers"]
    assert len(task["signers"]) == 3
    assert task["txHash"].startswith("0x")
    assert len(_verified_logs(net, root)) == 1
    assert f"responded in tx {task['txHash']} (3 signers, 90% stake)" in caplog.text
    # Late signatures are acknowledged, and never cause a second response.
    assert _sign(node, net, root, 0).json()["status"] == "responded"


def test_it_unknown_task_until_announced(net, make_node):
    root = _new_root(net)  # created before the aggregator starts: it never sees this event
    node = make_node()
    time.sleep(0.3)
    refused = _sign(node, net, root, 3)
    assert refused.status_code == 404
    assert refused.json()["code"] == "unknown_task"
    assert refused.json()["error"] == "unknown task"
    assert refused.json()["batchIdentifierHash"] == "0x" + _identifier(net, root).hex()

    created = _announce(node, net, root)
    assert created.status_code == 200
    assert created.json()["status"] == "created"
    assert _announce(node, net, root).json()["status"] == "exists"
    for operator in (1, 2, 3):
        assert _sign(node, net, root, operator).json()["status"] == "accepted"
    _wait(lambda: _responded_on_chain(net, root))
    _wait(lambda: _announce(node, net, root).json()["status"] == "responded")
    assert len(_verified_logs(net, root)) == 1


def test_it_announcement_is_checked_against_the_chain(net, make_node):
    answered = _new_root(net)
    net.respond(root=answered, signers=[1, 2, 3])
    node = make_node()
    body = {"batchMerkleRoot": "0x" + "ab" * 32, "senderAddress": "0x" + "11" * 20, "taskCreatedBlock": 5}
    missing = _post(node, "/tasks", body)
    assert missing.status_code == 404
    assert missing.json()["code"] == "unknown_batch"
    bad = _post(node, "/tasks", {**body, "batchMerkleRoot": "0x12"})
    assert bad.status_code == 400
    assert bad.json()["field"] == "batchMerkleRoot"
    assert _post(node, "/tasks", b"not json").status_code == 400

    # An already responded batch is reported as such, without creating a task.
    assert _announce(node, net, answered).json()["status"] == "responded"
    assert _health(node)["tasks"] == []


def test_it_a_task_expires_after_its_window(net, make_node, caplog):
    caplog.set_level(logging.INFO, logger="devnet.aggregator")
    node = make_node(aggregator_task_window=1.0)
    root = _new_root(net)
    _wait(lambda: _task(node, root))
    assert _sign(node, net, root, 3).json()["status"] == "accepted"
    time.sleep(1.2)
    gone = _sign(node, net, root, 2)
    assert gone.status_code == 410
    assert gone.json()["code"] == "task_expired"
    task = _task(node, root)
    assert task is not None
    assert task["expired"] is True
    assert task["signers"] == []
    assert "expired after 1 s without quorum: lost" in caplog.text
    assert not _responded_on_chain(net, root)
    # The control plane's replay revives it.
    assert _announce(node, net, root).json()["status"] == "created"
    assert _sign(node, net, root, 2).json()["status"] == "accepted"


def test_it_health_shows_boot_id_and_a_restart_loses_everything(net, make_node):
    state = _state(net)
    first = make_node(state=state)
    root = _new_root(net)
    _wait(lambda: _task(first, root))
    assert _sign(first, net, root, 3).status_code == 200
    health = _health(first)
    assert health["bootId"] == first.boot_id
    assert len(first.boot_id) == 32
    assert health["startedAt"] <= time.time()
    [task] = health["tasks"]
    assert task["signers"] == [net.state["operators"][3]["operator_id"]]
    assert task["signedStake"] == str(40 * ETH)
    assert task["responded"] is False
    assert task["expired"] is False
    first.stop()

    second = make_node(state=state)  # same port, new process
    health = _health(second)
    assert health["bootId"] != first.boot_id
    assert health["tasks"] == []
    assert _sign(second, net, root, 2).json()["code"] == "unknown_task"


def test_it_no_second_response_for_a_batch_already_verified(net, make_node, caplog):
    caplog.set_level(logging.INFO, logger="devnet.aggregator")
    # A slow follower: the aggregator does not see BatchVerified, so its submitter must check the chain.
    node = make_node(aggregator_poll_interval=60)
    root = _new_root(net)
    assert _announce(node, net, root).json()["status"] == "created"
    net.respond(root=root, signers=[0, 2, 3])
    for operator in (1, 2, 3):
        assert _sign(node, net, root, operator).status_code == 200
    _wait(lambda: _held(node, root)["responded"])
    assert _sign(node, net, root, 0).json()["status"] == "responded"
    assert len(_verified_logs(net, root)) == 1
    assert "already verified on chain: not responding again" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    # With the follower running, BatchVerified itself marks the task.
    fast = make_node()
    root = _new_root(net)
    _wait(lambda: _task(fast, root))
    net.respond(root=root, signers=[1, 2, 3])
    _wait(lambda: _held(fast, root)["responded"])
    assert _sign(fast, net, root, 3).json()["status"] == "responded"
    assert len(_verified_logs(net, root)) == 1


def test_it_bad_submissions_are_refused_and_do_not_count(net, make_node):
    node = make_node()
    root = _new_root(net)
    _wait(lambda: _task(node, root))

    forged = _sign(node, net, root, 3, wrong_key=True)
    assert forged.status_code == 400
    assert forged.json()["code"] == "invalid_signature"
    assert _held(node, root)["signers"] == []
    # The invalid one posted first does not block the valid one.
    assert _sign(node, net, root, 3).json()["status"] == "accepted"
    assert _sign(node, net, root, 3, wrong_key=True).json()["code"] == "invalid_signature"
    assert _held(node, root)["signedStake"] == str(40 * ETH)

    stranger = signed_response(net, root=root, operator=1) | {"operatorId": "0x" + "77" * 32}
    refused = _post(node, "/signatures", stranger)
    assert refused.status_code == 403
    assert refused.json()["code"] == "not_an_operator"

    malformed = _post(node, "/signatures", {"batchMerkleRoot": "0x00"})
    assert malformed.status_code == 400
    assert "field" in malformed.json()
    assert _post(node, "/signatures", b"{" + b" " * 5000 + b"}").status_code == 413
    assert requests.get(node.url + "/nope", timeout=5).status_code == 404


def test_it_a_failed_send_is_retried_with_a_bumped_fee(net, make_node, caplog):
    node = make_node()
    sent: list[int] = []
    send_once = node._send_once

    def flaky(data, *, nonce, gas, fees: Fees):
        sent.append(fees.max_fee)
        if len(sent) == 1:
            raise ValueError("replacement transaction underpriced")
        return send_once(data, nonce=nonce, gas=gas, fees=fees)

    node._send_once = flaky
    root = _new_root(net)
    _wait(lambda: _task(node, root))
    for operator in (1, 2, 3):
        _sign(node, net, root, operator)
    _wait(lambda: _held(node, root)["responded"])
    assert sent[1] == sent[0] * 5 // 4
    assert len(_verified_logs(net, root)) == 1
    assert "retry 2/5" in caplog.text


def test_it_run_aggregator_stops_on_its_event(net):
    state = _state(net)
    stop = threading.Event()
    thread = threading.Thread(target=run_aggregator, kwargs={"state": state, "stop": stop})
    thread.start()
    try:
        url = f"http://127.0.0.1:{state['aggregator']['port']}/health"

        def healthy() -> bool:
            try:
                return requests.get(url, timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        _wait(healthy)
    finally:
        stop.set()
        thread.join(15)
    assert not thread.is_alive()


def test_it_serves_net_rpc_with_upstreams_semantics(
    net: Net, make_node: Callable[..., AggregatorNode]
) -> None:
    rpc_port = free_port()
    state = _state(net, aggregator_unknown_task_wait=0.5)
    state["aggregator"]["rpc_port"] = rpc_port
    node = make_node(state=state)
    root = _new_root(net)
    _wait(lambda: _task(node, root))

    def gob(body: dict[str, Any]) -> dict[str, Any]:
        return signed_response_to_gob(signed_response_parse(json.dumps(body).encode()))

    with Client("127.0.0.1", rpc_port) as client:
        assert client.call(PING, EMPTY, {}) == 1
        assert (
            client.call(METHOD, SIGNED_TASK_RESPONSE, gob(signed_response(net, root=root, operator=1))) == 0
        )
        assert _held(node, root)["signers"] == [signed_response(net, root=root, operator=1)["operatorId"]]
        # A task it does not know (on no chain): held for the wait, then dropped with reply 1 and no error.
        unknown = signed_response(net, root=bytes(range(32)), operator=2)
        started = time.monotonic()
        assert client.call(METHOD, SIGNED_TASK_RESPONSE, gob(unknown)) == 1
        assert time.monotonic() - started >= 0.5
        nil = gob(signed_response(net, root=root, operator=2))
        nil["BlsSignature"] = {}
        with pytest.raises(RpcError, match="nil signature"):
            client.call(METHOD, SIGNED_TASK_RESPONSE, nil)


def test_it_responds_to_tasks_reaching_quorum_together_each_once_on_a_nonce_of_its_own(
    net, make_node, caplog
):
    """Responses are built several at a time (SUBMIT_THREADS) but sent one after another: every task gets one
    transaction, the account's nonces advance by exactly that many, and no send collides with another."""
    caplog.set_level(logging.INFO, logger="devnet.aggregator")
    node = make_node()
    roots = [_new_root(net) for _ in range(8)]
    for root in roots:
        _wait(functools.partial(_task, node, root))
    nonce_before = net.w3.eth.get_transaction_count(node.account.address)

    def sign_all(root: bytes) -> list[int]:
        return [_sign(node, net, root, operator).status_code for operator in (1, 2, 3)]

    with ThreadPoolExecutor(max_workers=len(roots)) as pool:
        assert list(pool.map(sign_all, roots)) == [[200, 200, 200]] * len(roots)

    def responded(root: bytes) -> bool:
        task = _task(node, root)
        return bool(task and task["responded"] and task["txHash"])

    for root in roots:
        _wait(functools.partial(responded, root), timeout=30)
    assert [len(_verified_logs(net, root)) for root in roots] == [1] * len(roots)
    assert len({_held(node, root)["txHash"] for root in roots}) == len(roots)
    assert net.w3.eth.get_transaction_count(node.account.address) == nonce_before + len(roots)
    assert "failed" not in caplog.text, "a response's send collided with another's nonce"


def test_it_loads_every_operators_keys_when_it_starts(net, make_node, monkeypatch):
    """As eigensdk's operators-info service: a restarted aggregator reads no key while answering replays."""
    node = make_node()

    def read(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("an operator's G1 key was read from the registry after start")

    monkeypatch.setattr(contracts, "operator_pubkey_g1", read)
    root = _new_root(net)
    _wait(lambda: _task(node, root))
    for operator in (1, 2, 3):
        assert _sign(node, net, root, operator).status_code == 200
    _wait(lambda: _held(node, root)["responded"])
    assert len(_verified_logs(net, root)) == 1
