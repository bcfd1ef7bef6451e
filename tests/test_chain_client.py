from __future__ import annotations

import itertools
import logging
import time

import pytest
from eth_utils import keccak

from chain import (
    AdaptiveRange,
    BlockNotFound,
    ChainClient,
    NodeUnavailable,
    RangeTooLarge,
    RawLog,
    RpcError,
    TransientRpcError,
    fetch_logs,
    rpc_error_for,
)
from devnet.anvil import free_port
from devnet.faultproxy import FaultProxy

PING_TOPIC = "0x" + keccak(b"Ping(bytes32,bytes)").hex()

# Runtime code, hand-assembled: on any call, LOG2(memory = calldata, topic0 = PING_TOPIC,
# topic1 = first 32 bytes of calldata). No solc needed.
RUNTIME = bytes.fromhex(
    "36600060003760"  # CALLDATASIZE PUSH1 0 PUSH1 0 CALLDATACOPY PUSH1 ...
    "0035"  # ... 0 CALLDATALOAD                      -> topic1
    "7f" + PING_TOPIC[2:] + "36"  # PUSH32 topic0 CALLDATASIZE  -> size
    "6000a200"  # PUSH1 0 (offset) LOG2 STOP
)
# Init code: CODECOPY the runtime that follows these 11 bytes into memory and RETURN it.
INIT = bytes([0x60, len(RUNTIME), 0x80, 0x60, 0x0B, 0x60, 0x00, 0x39, 0x60, 0x00, 0xF3]) + RUNTIME


def recorder():
    delays: list[float] = []
    return delays, delays.append


def receipt(anvil, tx_hash):
    # anvil answers eth_sendTransaction before the automined block is indexed: poll briefly.
    deadline = time.monotonic() + 5
    while (result := anvil.rpc("eth_getTransactionReceipt", [tx_hash])) is None:
        assert time.monotonic() < deadline, f"no receipt for {tx_hash}"
        time.sleep(0.01)
    return result


def deploy(anvil) -> str:
    sender = anvil.rpc("eth_accounts")[0]
    tx = anvil.rpc("eth_sendTransaction", [{"from": sender, "data": "0x" + INIT.hex()}])
    return receipt(anvil, tx)["contractAddress"].lower()


def ping(anvil, contract: str, tag: int) -> str:
    sender = anvil.rpc("eth_accounts")[0]
    data = "0x" + tag.to_bytes(32, "big").hex()
    return anvil.rpc("eth_sendTransaction", [{"from": sender, "to": contract, "data": data}])


def topic_for(tag: int) -> str:
    return "0x" + tag.to_bytes(32, "big").hex()


def populate(anvil, contract: str, *, rounds: int, gap: int) -> int:
    """Pings spread over many blocks, some blocks with three logs; returns the number of pings."""
    sent: list[str] = []
    for round_ in range(rounds):
        anvil.rpc("anvil_mine", [hex(gap)])
        if round_ % 3 == 0:
            anvil.rpc("evm_setAutomine", [False])
            sent += [ping(anvil, contract, len(sent) + i) for i in range(3)]
            anvil.rpc("evm_mine", [])
            anvil.rpc("evm_setAutomine", [True])
        else:
            sent.append(ping(anvil, contract, len(sent)))
        receipt(anvil, sent[-1])  # mined before the next blocks, so logs stay apart
    return len(sent)


def chain_logger_records(caplog):
    return [r for r in caplog.records if r.name == "chain"]


def test_it_reads_head_chain_id_and_blocks_like_the_node(anvil):
    anvil.rpc("anvil_mine", [hex(150)])
    with FaultProxy(anvil.url) as proxy, ChainClient(proxy.url) as client:
        head = client.block_number()
        assert head == int(anvil.rpc("eth_blockNumber"), 16) == 150
        assert client.chain_id() == 31337

        raw = anvil.rpc("eth_getBlockByNumber", [hex(42), False])
        block = client.get_block(42)
        assert block is not None
        assert (block.number, block.hash, block.parent_hash, block.timestamp) == (
            42,
            raw["hash"].lower(),
            raw["parentHash"].lower(),
            int(raw["timestamp"], 16),
        )
        latest = client.get_block("latest")
        assert latest is not None
        assert latest.number == head
        assert client.get_block(head + 10) is None

        headers = client.get_blocks(list(range(head + 1)))
        assert [h.number for h in headers] == list(range(head + 1))
        assert headers[42] == block
        assert headers[-1] == latest
        assert all(b.parent_hash == a.hash for a, b in itertools.pairwise(headers))
        assert proxy.batch_sizes == [100, 51]  # chunks of <= 100

        with pytest.raises(BlockNotFound):
            client.get_blocks([head, head + 1])


def test_it_matches_batch_answers_by_id_and_raises_error_elements(anvil):
    with FaultProxy(anvil.url, reverse_batches=True) as proxy, ChainClient(proxy.url) as client:
        results = client.batch(
            [("eth_chainId", []), ("eth_blockNumber", []), ("eth_getBlockByNumber", ["0x0", False])]
        )
        assert results[0] == hex(31337)
        assert results[1] == "0x0"
        assert results[2]["number"] == "0x0"
        with pytest.raises(RpcError) as excinfo:
            client.batch([("eth_chainId", []), ("no_such_method", [])])
        assert excinfo.value.method == "no_such_method"
        assert not isinstance(excinfo.value, TransientRpcError)
        assert client.batch([]) == []


def test_it_decodes_logs_created_on_the_node(anvil):
    contract = deploy(anvil)
    other = deploy(anvil)
    populate(anvil, contract, rounds=4, gap=2)  # 3 + 1 + 1 + 3 pings
    receipt(anvil, ping(anvil, other, 99))
    client = ChainClient(anvil.url)
    head = client.block_number()

    mixed_case = "0x" + contract[2:].upper()
    logs = client.get_logs(addresses=[mixed_case], topics=None, from_block=0, to_block=head)
    assert len(logs) == 8
    assert logs == sorted(logs, key=lambda log: (log.block_number, log.log_index))
    assert [log.topics[1] for log in logs] == [topic_for(i) for i in range(8)]

    first = logs[0]
    tx = receipt(anvil, first.transaction_hash)
    assert isinstance(first, RawLog)
    assert first.address == contract
    assert first.topics == (PING_TOPIC, topic_for(0))
    assert first.data == topic_for(0)
    assert first.block_number == int(tx["blockNumber"], 16)
    assert first.block_hash == tx["blockHash"].lower()
    assert first.transaction_index == int(tx["transactionIndex"], 16)
    assert first.removed is False
    # Three pings were mined into one block: distinct, increasing log and transaction indexes.
    same_block = [log for log in logs if log.block_number == first.block_number]
    assert [log.log_index for log in same_block] == [0, 1, 2]
    assert [log.transaction_index for log in same_block] == [0, 1, 2]

    by_topic = client.get_logs(
        addresses=[contract], topics=[PING_TOPIC, [topic_for(2), topic_for(5)]], from_block=0, to_block=head
    )
    assert [log.topics[1] for log in by_topic] == [topic_for(2), topic_for(5)]
    both = client.get_logs(addresses=[contract, other], topics=[PING_TOPIC], from_block=0, to_block=head)
    assert len(both) == 9
    assert both[-1].address == other
    assert client.get_logs(addresses=[other], topics=None, from_block=0, to_block=first.block_number) == []


def test_it_shrinks_the_range_and_returns_exactly_the_logs_of_small_ranges(anvil, caplog):
    contract = deploy(anvil)
    pings = populate(anvil, contract, rounds=30, gap=9)
    direct = ChainClient(anvil.url)
    head = direct.block_number()
    expected = [
        log
        for start in range(0, head + 1, 20)
        for log in direct.get_logs(
            addresses=[contract], topics=None, from_block=start, to_block=min(head, start + 19)
        )
    ]
    assert len(expected) == pings

    caplog.set_level(logging.WARNING, logger="chain")
    window = AdaptiveRange(initial=2000)
    seen_chunks: list[tuple[int, int]] = []
    with FaultProxy(anvil.url, max_log_range=40) as proxy, ChainClient(proxy.url) as client:
        chunks = list(
            fetch_logs(
                client,
                addresses=[contract],
                topics=[PING_TOPIC],
                from_block=0,
                to_block=head,
                window=window,
                on_chunk=lambda a, b, _logs: seen_chunks.append((a, b)),
            )
        )
    got = [log for _, _, logs in chunks for log in logs]
    assert got == expected  # nothing missing, nothing duplicated, in order
    spans = [(a, b) for a, b, _ in chunks]
    assert spans == seen_chunks
    assert spans[0][0] == 0
    assert spans[-1][1] == head
    assert all(b + 1 == c for (_, b), (c, _) in itertools.pairwise(spans))
    assert all(b - a + 1 <= 40 for a, b in spans)
    assert window.size < 2000
    assert proxy.faults > 0
    refusals = [r.getMessage() for r in chain_logger_records(caplog)]
    assert len(refusals) == proxy.faults
    # The first chunk is only 0-head long, so the window halves until it is actually smaller than that.
    first_shrink = 2000
    while first_shrink > head:
        first_shrink //= 2
    assert refusals[0] == (
        f"eth_getLogs 0-{head} refused (query returned more than 10000 results (code -32005)); "
        f"range shrinks to {first_shrink}"
    )
    assert all("refused" in line and "range shrinks to" in line for line in refusals)


def test_it_sizes_the_span_by_log_density_within_the_refusal_limit() -> None:
    # Density unknown: the first range probes a 64th of the target's blocks (at a log a block).
    assert AdaptiveRange(initial=1000, target_logs=6400).size == 100
    window = AdaptiveRange(initial=1000, maximum=5000, target_logs=100)
    assert window.size == 1  # never below the minimum
    window.success(span=1, logs=0)
    assert window.size == 4  # at most four times the last span
    window.success(span=4, logs=0)
    assert window.size == 16
    window.success(span=16, logs=800)
    assert window.size == 2  # 50 logs a block: two blocks hold the target
    window.success(span=2, logs=100)
    assert window.size == 2
    window.success(span=2, logs=0)
    assert window.size == 8
    window.failure()  # the provider refused 8 blocks: never ask for more than half of that again, for now
    assert (window.size, window.limit) == (4, 4)
    window.success(span=4, logs=0)
    assert window.size == 5  # the limit grows slowly from what was accepted, however empty the range
    window.success(span=5, logs=100, spread=1)
    assert window.size == 1  # the logs all came in the last block: that block's density counts
    plain = AdaptiveRange(initial=1000)
    plain.success(span=1000, logs=10_000)
    assert plain.size == 1250  # without a target, the span ignores the logs as before


def test_it_reraises_a_refusal_that_persists_at_the_minimum_window(anvil):
    anvil.rpc("anvil_mine", [hex(10)])
    window = AdaptiveRange(initial=8, minimum=2)
    with FaultProxy(anvil.url, max_log_range=1) as proxy, ChainClient(proxy.url) as client:
        walk = fetch_logs(client, addresses=[], topics=None, from_block=0, to_block=10, window=window)
        with pytest.raises(RangeTooLarge):
            next(walk)
        assert window.size == 2
        assert proxy.log_ranges == [(0, 7), (0, 3), (0, 1)]  # the same start every time, never skipped


def test_it_tracks_the_window_size():
    window = AdaptiveRange(initial=4, minimum=2, maximum=6)
    window.success()
    assert window.size == 5  # at least +1
    window.success()
    window.success()
    assert window.size == 6  # capped
    window.failure()
    assert window.size == 3
    window.failure()
    window.failure()
    assert window.size == 2
    assert window.at_minimum
    big = AdaptiveRange(initial=1000)
    big.success()
    assert big.size == 1250
    with pytest.raises(ValueError, match="minimum"):
        AdaptiveRange(minimum=0)


def test_it_retries_transient_faults_with_increasing_capped_backoff(anvil, caplog):
    caplog.set_level(logging.WARNING, logger="chain")
    delays, sleep = recorder()
    with FaultProxy(anvil.url, fail_first=6, fail_status=503) as proxy:
        client = ChainClient(proxy.url, backoff_base=0.25, backoff_cap=1.5, sleep=sleep)
        assert client.get_logs(addresses=[], topics=None, from_block=0, to_block=0) == []
        assert client.block_number() == 0  # other methods are not faulted
    assert proxy.faults == 6
    assert len(delays) == 6
    assert all(a < b for a, b in itertools.pairwise(delays[:4]))  # 0.25, 0.5, 1.0 (+jitter), 1.5
    assert 0.25 <= delays[0] <= 0.3
    assert delays[3:] == [1.5, 1.5, 1.5]  # capped
    lines = [r.getMessage() for r in chain_logger_records(caplog)]
    assert len(lines) == 6
    assert lines[1] == f"rpc eth_getLogs failed (HTTP 503); attempt 2/8, retry in {delays[1]:.2f}s"


def test_it_raises_after_max_attempts(anvil):
    delays, sleep = recorder()
    with FaultProxy(anvil.url, fail_first=100, fail_status=429) as proxy:
        client = ChainClient(proxy.url, max_attempts=4, sleep=sleep)
        with pytest.raises(TransientRpcError) as excinfo:
            client.get_logs(addresses=[], topics=None, from_block=0, to_block=0)
    assert proxy.faults == 4
    assert len(delays) == 3
    assert str(excinfo.value) == "rpc eth_getLogs failed: HTTP 429; gave up after 4 attempts"


def test_it_treats_an_answer_that_is_not_json_rpc_as_transient(anvil):
    delays, sleep = recorder()
    with FaultProxy(
        anvil.url, fail_first=2, fail_methods={"eth_blockNumber"}, fail_status=200, fail_body=b'{"hello": 1}'
    ) as proxy:
        assert ChainClient(proxy.url, sleep=sleep).block_number() == 0
        assert len(delays) == 2
        proxy.fail_first, proxy.fail_body = 1, b"<html>bad gateway</html>"
        with pytest.raises(TransientRpcError, match="answer is not JSON"):
            ChainClient(proxy.url, max_attempts=1).block_number()
        assert proxy.faults == 3


def test_it_does_not_retry_range_refusals(anvil):
    with FaultProxy(anvil.url, max_log_range=1) as proxy, ChainClient(proxy.url) as client:
        with pytest.raises(RangeTooLarge) as excinfo:
            client.get_logs(addresses=[], topics=None, from_block=0, to_block=0x10)
        assert excinfo.value.code == -32005
        assert excinfo.value.method == "eth_getLogs"
        proxy.max_log_range, proxy.fail_first, proxy.fail_status = None, 1, 413
        with pytest.raises(RangeTooLarge, match="HTTP 413"):
            client.get_logs(addresses=[], topics=None, from_block=0, to_block=0)
        assert proxy.requests == 2


@pytest.mark.parametrize(
    ("method", "code", "message", "expected"),
    [
        ("eth_getLogs", -32005, "query returned more than 10000 results", RangeTooLarge),
        ("eth_getLogs", -32602, "eth_getLogs block range is limited to 10000", RangeTooLarge),
        ("eth_getLogs", -32000, "block range too large", RangeTooLarge),
        ("eth_getLogs", -32600, "Log response size exceeded", RangeTooLarge),
        ("eth_getLogs", -32000, "too many blocks requested", RangeTooLarge),
        ("eth_getLogs", -32005, "daily request count exceeded, request rate limited", TransientRpcError),
        ("eth_getLogs", 429, "Too Many Requests", TransientRpcError),
        ("eth_blockNumber", -32000, "header not found", TransientRpcError),
        ("eth_getBlockByNumber", -32603, "internal error", TransientRpcError),
        ("eth_call", -32000, "gas required exceeds allowance", RpcError),
        ("eth_getLogs", -32602, "invalid argument 0: hex string without 0x prefix", RpcError),
        ("no_such_method", -32601, "Method not found", RpcError),
    ],
)
def test_it_maps_provider_errors(method, code, message, expected):
    error = rpc_error_for(method, code, message)
    assert type(error) is expected
    assert (error.code, error.message, error.method) == (code, message, method)


def test_it_raises_transient_error_when_the_node_is_down(caplog):
    caplog.set_level(logging.DEBUG)
    delays, sleep = recorder()
    client = ChainClient(f"http://127.0.0.1:{free_port()}", max_attempts=3, sleep=sleep)
    with pytest.raises(NodeUnavailable) as excinfo:
        client.block_number()
    assert isinstance(excinfo.value, TransientRpcError)
    assert excinfo.value.__cause__ is None
    assert excinfo.value.__suppress_context__  # no urllib3 chain under it either
    assert len(delays) == 2
    # Every logger at WARNING and above: urllib3 must not add its own warnings or tracebacks.
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(records) == 2
    assert all(r.name == "chain" and r.exc_info is None for r in records)
    assert records[0].getMessage() == (
        f"rpc eth_blockNumber failed (connection refused); attempt 1/3, retry in {delays[0]:.2f}s"
    )
    # fetch_logs does not shrink for a node that is down: a smaller range would not help.
    window = AdaptiveRange(initial=100)
    with pytest.raises(NodeUnavailable):
        next(fetch_logs(client, addresses=[], topics=None, from_block=0, to_block=500, window=window))
    assert window.size == 100
