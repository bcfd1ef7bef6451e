"""respondToTaskV2 through EigenLayer's NonSignerStakesAndSignature, and the OperatorStateRetriever, on a real
anvil: every check of the service manager and every index the retriever hands out."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any, cast

import pytest
from eth_utils import keccak
from web3.types import Nonce, TxParams, Wei

from bls import G1_GENERATOR, aggregate_g1, keypair_from_seed
from chain import ChainClient
from chain.contracts import operator_state_data, operator_state_decode
from devnet import contracts as c
from devnet.anvil import Anvil
from devnet.nonsigners import nonsigner_params_build
from tests.test_contracts import ETH, STAKES, Net, account, net_build


@pytest.fixture(scope="module")
def shared(module_anvil: Anvil) -> Net:
    return net_build(module_anvil)


@pytest.fixture
def chain(shared: Net) -> Iterator[Net]:
    snapshot = shared.anvil.rpc("evm_snapshot")
    try:
        yield shared
    finally:
        assert shared.anvil.rpc("evm_revert", [snapshot]) is True


def revert_of(excinfo: pytest.ExceptionInfo[c.ContractRevertError]) -> tuple[str | None, tuple[Any, ...]]:
    return excinfo.value.error_name, excinfo.value.error_args


def respond_error(
    chain: Net, root: bytes, params: c.NonSignerStakesAndSignature
) -> tuple[str | None, tuple[Any, ...]]:
    with pytest.raises(c.ContractRevertError) as excinfo:
        chain.respond(root, [], params=params)
    return revert_of(excinfo)


def test_it_accepts_everyone_signing_with_one_empty_list_of_non_signer_stake_indices(chain: Net) -> None:
    root = keccak(text="all sign")
    chain.create_task(root)
    params = chain.params(root, [0, 1, 2, 3])
    assert params.non_signer_pubkeys == ()
    assert params.non_signer_stake_indices == ((),)
    balance = c.batcher_balance(
        chain.w3, service_manager=chain.service_manager, batcher=chain.batcher.address
    )
    before = chain.w3.eth.get_balance(chain.aggregator.address)
    receipt = chain.respond(root, [0, 1, 2, 3])
    assert [e.name for e in c.decode_events(chain.w3, receipt)] == ["BatchVerified"]

    # The batcher pays (gas used + 70,000) x gas price to the aggregator, within the fee limit.
    paid = balance - c.batcher_balance(
        chain.w3, service_manager=chain.service_manager, batcher=chain.batcher.address
    )
    price = int(receipt["effectiveGasPrice"])
    assert 0 < paid <= 10**15
    assert paid % price == 0
    assert receipt["gasUsed"] < paid // price < receipt["gasUsed"] + 70_000
    after = chain.w3.eth.get_balance(chain.aggregator.address)
    assert after == before - receipt["gasUsed"] * price + paid


def test_it_accepts_some_non_signers_and_counts_their_stake_out(chain: Net) -> None:
    root = keccak(text="some sign")
    block = chain.create_task(root)
    params = chain.params(root, [1, 2, 3])
    assert params.non_signer_pubkeys == (chain.keys[0].public_key_g1,)
    manager = c.service_manager_contract(chain.w3, chain.service_manager)
    message = c.batch_identifier(batch_merkle_root=root, sender=chain.batcher.address)
    chain.anvil.rpc("evm_mine")  # eth_call runs in the latest block: the task's block must be behind it
    totals, record = manager.functions.checkSignatures(message, block, params.to_abi()).call()
    assert [list(t) for t in totals] == [[90 * ETH], [100 * ETH]]
    assert record == keccak(block.to_bytes(4, "big") + chain.keys[0].operator_id)
    assert chain.respond(root, [1, 2, 3])["status"] == 1


def test_it_rejects_unsorted_non_signers(chain: Net) -> None:
    root = keccak(text="unsorted")
    chain.create_task(root)
    params = chain.params(root, [2, 3])
    assert len(params.non_signer_pubkeys) == 2
    flipped = replace(
        params,
        non_signer_pubkeys=params.non_signer_pubkeys[::-1],
        non_signer_quorum_bitmap_indices=params.non_signer_quorum_bitmap_indices[::-1],
        non_signer_stake_indices=(params.non_signer_stake_indices[0][::-1],),
    )
    assert respond_error(chain, root, flipped) == ("NonSignersNotSorted", (1,))
    doubled = replace(
        params,
        non_signer_pubkeys=(params.non_signer_pubkeys[0],) * 2,
        non_signer_quorum_bitmap_indices=(params.non_signer_quorum_bitmap_indices[0],) * 2,
        non_signer_stake_indices=((params.non_signer_stake_indices[0][0],) * 2,),
    )
    assert respond_error(chain, root, doubled) == ("NonSignersNotSorted", (1,))


def test_it_rejects_a_wrong_index_and_mismatched_lengths(chain: Net) -> None:
    root = keccak(text="wrong index")
    block = chain.create_task(root)
    params = chain.params(root, [1, 2, 3])
    # Operator 0's stake changes after the task: its entry 1 exists, but is not the one valid at the block.
    c.set_operator_stake(
        chain.w3, registry=chain.registry, owner=chain.owner, operator_id=chain.keys[0].operator_id, stake=ETH
    )
    (index,) = params.non_signer_stake_indices[0]
    assert respond_error(chain, root, replace(params, non_signer_stake_indices=((index + 1,),))) == (
        "IndexNotValidAtBlock",
        (index + 1, block),
    )
    assert respond_error(
        chain, root, replace(params, total_stake_indices=(params.total_stake_indices[0] + 1,))
    )[0] == ("IndexNotValidAtBlock")
    assert respond_error(chain, root, replace(params, total_stake_indices=(99,))) == (
        "IndexOutOfRange",
        (99, 6),
    )
    assert respond_error(chain, root, replace(params, non_signer_stake_indices=((),)))[0] == (
        "InputArrayLengthMismatch"
    )
    assert respond_error(chain, root, replace(params, quorum_apks=()))[0] == "InputEmptyQuorumApks"
    assert chain.respond(root, [1, 2, 3])["status"] == 1  # the retriever's indices were right all along


def test_it_rejects_a_stale_apk_and_an_apk_that_is_not_the_quorums(chain: Net) -> None:
    root = keccak(text="stale apk")
    block = chain.create_task(root)
    params = chain.params(root, [0, 1, 2, 3])
    newcomer, key = account("apk newcomer"), keypair_from_seed("test-contracts", 700)
    chain.fund(newcomer)
    c.register_operator(chain.w3, registry=chain.registry, account=newcomer, keypair=key, socket="x")
    registry = c.registry_contract(chain.w3, chain.registry)
    latest = registry.functions.getApkHistoryLength(0).call() - 1
    assert latest == params.quorum_apk_indices[0] + 1
    # The newest apk entry (and the newest apk) are not the quorum's at the task's block.
    assert respond_error(chain, root, replace(params, quorum_apk_indices=(latest,))) == (
        "IndexNotValidAtBlock",
        (latest, block),
    )
    current = registry.functions.getApk(0).call()
    assert tuple(current) == aggregate_g1([*params.quorum_apks, key.public_key_g1]).to_evm()
    name, _ = respond_error(
        chain, root, replace(params, quorum_apks=(aggregate_g1([*params.quorum_apks, key.public_key_g1]),))
    )
    assert name == "QuorumApkMismatch"


def test_it_rejects_a_non_signer_unregistered_at_the_block(chain: Net) -> None:
    c.deregister_operator(chain.w3, registry=chain.registry, account=chain.operators[0])
    root = keccak(text="unregistered non-signer")
    block = chain.create_task(root)
    params = chain.params(root, [1, 2, 3])
    assert params.non_signer_pubkeys == ()  # operator 0 is not in the state at the block
    out = chain.keys[0].operator_id
    with pytest.raises(c.ContractRevertError) as excinfo:
        c.check_signatures_indices(
            chain.w3,
            retriever=chain.retriever,
            registry=chain.registry,
            reference_block=block,
            non_signer_ids=[out],
        )
    assert revert_of(excinfo) == ("OperatorNotRegisteredInQuorum", (out, 0, block))
    stranger = keypair_from_seed("test-contracts", 800).operator_id
    with pytest.raises(c.ContractRevertError) as excinfo:
        c.check_signatures_indices(
            chain.w3,
            retriever=chain.retriever,
            registry=chain.registry,
            reference_block=block,
            non_signer_ids=[stranger],
        )
    assert revert_of(excinfo) == ("NoUpdateAtBlock", (stranger, block))

    # Claiming it as a non-signer by its latest bitmap entry (quorum bitmap 0) is refused.
    registry = c.registry_contract(chain.w3, chain.registry)
    latest = registry.functions.getQuorumBitmapHistoryLength(out).call() - 1
    stake_index = registry.functions.getOperatorStakeHistoryLength(out).call() - 1
    claimed = replace(
        params,
        non_signer_pubkeys=(chain.keys[0].public_key_g1,),
        non_signer_quorum_bitmap_indices=(latest,),
        non_signer_stake_indices=((stake_index,),),
        quorum_apks=(aggregate_g1([params.quorum_apks[0], chain.keys[0].public_key_g1]),),
    )
    assert respond_error(chain, root, claimed) == ("NonSignerNotRegistered", (out, block))


def test_it_rejects_signers_under_two_thirds_of_the_stake(chain: Net) -> None:
    root = keccak(text="under quorum")
    chain.create_task(root)
    with pytest.raises(c.ContractRevertError) as excinfo:
        chain.respond(root, [0, 1, 2])
    assert revert_of(excinfo) == ("InvalidQuorumThreshold", (60 * ETH, 100 * ETH))


def test_it_rejects_a_bad_signature_and_a_bad_gamma(chain: Net) -> None:
    root = keccak(text="bad signature")
    chain.create_task(root)
    params = chain.params(root, [1, 2, 3])
    wrong_sigma = aggregate_g1([params.sigma, G1_GENERATOR])
    assert respond_error(chain, root, replace(params, sigma=wrong_sigma)) == ("InvalidSignature", ())
    # A G2 aggregate of other keys changes gamma and breaks the G1/G2 binding.
    other = chain.params(root, [0, 2, 3])
    assert respond_error(chain, root, replace(params, apk_g2=other.apk_g2)) == ("InvalidSignature", ())


def test_it_needs_the_task_block_to_be_in_the_past(chain: Net) -> None:
    root = keccak(text="same block")
    head = int(chain.w3.eth.block_number)
    params = chain.params(root, [1, 2, 3], block=head)  # nothing changes in the next block: same indices
    manager = c.service_manager_contract(chain.w3, chain.service_manager)
    message = c.batch_identifier(batch_merkle_root=root, sender=chain.batcher.address)
    with pytest.raises(c.ContractRevertError) as excinfo:
        c.transact(
            chain.w3,
            manager.functions.checkSignatures(message, head + 5, params.to_abi()),
            account=chain.owner,
        )
    assert excinfo.value.error_name == "ReferenceBlockNotInPast"

    # createNewTask and respondToTaskV2 mined in one block: the response fails on chain.
    txs = [
        (chain.batcher, manager.functions.createNewTask(root, "http://x", 10**15)),
        (chain.aggregator, manager.functions.respondToTaskV2(root, chain.batcher.address, params.to_abi())),
    ]
    chain.anvil.rpc("evm_setAutomine", [False])
    try:
        hashes = []
        for sender, function in txs:
            tx: TxParams = {
                "from": sender.address,
                "nonce": Nonce(chain.w3.eth.get_transaction_count(sender.address, "pending")),
                "gas": 1_000_000,
                "maxFeePerGas": Wei(10 * 10**9),
                "maxPriorityFeePerGas": Wei(10**9),
            }
            signed = sender.sign_transaction(cast(dict[str, Any], function.build_transaction(tx)))
            hashes.append(chain.w3.eth.send_raw_transaction(signed.raw_transaction))
        chain.anvil.rpc("evm_mine")
    finally:
        chain.anvil.rpc("evm_setAutomine", [True])
    created, responded = (chain.w3.eth.get_transaction_receipt(h) for h in hashes)
    assert created["status"] == 1
    assert responded["status"] == 0
    assert created["blockNumber"] == responded["blockNumber"] == head + 1
    # Replayed at the end of that block, where block.number is still the task's block.
    data = txs[1][1]._encode_transaction_data()
    try:
        chain.w3.eth.call({"from": chain.aggregator.address, "to": manager.address, "data": data})
    except Exception as exc:
        name, args = c.decode_revert(getattr(exc, "data", None))
    else:
        raise AssertionError("the replay did not revert")
    assert (name, args) == ("ReferenceBlockNotInPast", (head + 1, head + 1))
    # One block later the same response goes through.
    chain.anvil.rpc("evm_mine")
    assert chain.respond(root, [1, 2, 3])["status"] == 1


def test_it_rejects_a_fee_over_the_limit(chain: Net) -> None:
    root = keccak(text="fee limit")
    c.create_task(
        chain.w3,
        service_manager=chain.service_manager,
        batcher=chain.batcher,
        batch_merkle_root=root,
        data_pointer="x",
        fee_limit=1000,
    )
    # The estimate runs at gas price 0, so the transaction is mined and fails; its replay (on the state before
    # its block, at its fees) needs the task's block behind that state.
    chain.anvil.rpc("evm_mine")
    with pytest.raises(c.ContractRevertError) as excinfo:
        chain.respond(root, [1, 2, 3])
    assert excinfo.value.error_name == "ExceededMaxRespondFee"
    assert excinfo.value.error_args[0] == 1000
    assert excinfo.value.error_args[1] > 1000
    assert excinfo.value.receipt is not None
    assert excinfo.value.receipt["status"] == 0


def test_it_rejects_a_batcher_whose_balance_does_not_cover_the_fee_limit(chain: Net) -> None:
    poor = account("poor batcher")
    chain.fund(poor)
    root = keccak(text="poor")
    block = int(
        c.create_task(
            chain.w3,
            service_manager=chain.service_manager,
            batcher=poor,
            batch_merkle_root=root,
            data_pointer="x",
            fee_limit=10**15,
            value=10**15 - 1,
        )["blockNumber"]
    )
    message = c.batch_identifier(batch_merkle_root=root, sender=poor.address)
    keys = chain.keys[1:]
    params = nonsigner_params_build(
        chain.w3,
        registry=chain.registry,
        retriever=chain.retriever,
        task_created_block=block,
        signatures={k.operator_id: k.sign(message) for k in keys},
        signer_keys_g2={k.operator_id: k.public_key_g2 for k in keys},
    )

    def respond() -> Any:
        return c.respond_to_task(
            chain.w3,
            service_manager=chain.service_manager,
            aggregator=chain.aggregator,
            batch_merkle_root=root,
            sender=poor.address,
            params=params,
        )

    with pytest.raises(c.ContractRevertError) as excinfo:
        respond()
    assert revert_of(excinfo) == ("InsufficientFunds", (poor.address.lower(), 10**15, 10**15 - 1))
    # receive() credits the sender; then the response is paid for.
    signed = poor.sign_transaction(
        {
            "to": chain.w3.to_checksum_address(chain.service_manager),
            "value": 1,
            "gas": 100_000,
            "maxFeePerGas": 10 * 10**9,
            "maxPriorityFeePerGas": 10**9,
            "chainId": chain.w3.eth.chain_id,
            "nonce": chain.w3.eth.get_transaction_count(poor.address),
        }
    )
    chain.w3.eth.wait_for_transaction_receipt(chain.w3.eth.send_raw_transaction(signed.raw_transaction))
    assert c.batcher_balance(chain.w3, service_manager=chain.service_manager, batcher=poor.address) == 10**15
    assert respond()["status"] == 1
    with pytest.raises(c.ContractRevertError) as excinfo:
        c.deposit_to_batcher(chain.w3, service_manager=chain.service_manager, account=poor, amount=0)
    assert revert_of(excinfo) == ("InvalidDepositAmount", (0,))


def test_it_rejects_a_second_response(chain: Net) -> None:
    root = keccak(text="second")
    chain.create_task(root)
    chain.respond(root, [1, 2, 3])
    with pytest.raises(c.ContractRevertError) as excinfo:
        chain.respond(root, [0, 1, 2, 3])
    assert revert_of(excinfo) == (
        "BatchAlreadyResponded",
        (c.batch_identifier(batch_merkle_root=root, sender=chain.batcher.address),),
    )


def test_it_gives_the_operator_state_at_a_past_block(chain: Net) -> None:
    """Read through web3's bindings and through the chain stage's plain JSON-RPC (the devnet aggregator's)."""
    client = ChainClient(chain.anvil.url)
    before = int(chain.w3.eth.block_number)
    c.set_operator_stake(
        chain.w3, registry=chain.registry, owner=chain.owner, operator_id=chain.keys[1].operator_id, stake=ETH
    )
    c.deregister_operator(chain.w3, registry=chain.registry, account=chain.operators[3])
    after = int(chain.w3.eth.block_number)

    def state(block: int) -> list[tuple[str, bytes, int]]:
        found = c.operator_state(
            chain.w3, retriever=chain.retriever, registry=chain.registry, block_number=block
        )
        data = operator_state_data(registry=chain.registry, block=block)
        plain = operator_state_decode(
            client.call("eth_call", [{"to": chain.retriever, "data": data}, "latest"])
        )
        assert plain == found
        return [(o.operator, o.operator_id, o.stake) for o in found]

    assert state(before) == [
        (chain.operators[i].address.lower(), chain.keys[i].operator_id, STAKES[i]) for i in range(4)
    ]
    assert state(after) == [
        (chain.operators[0].address.lower(), chain.keys[0].operator_id, STAKES[0]),
        (chain.operators[1].address.lower(), chain.keys[1].operator_id, ETH),
        (chain.operators[2].address.lower(), chain.keys[2].operator_id, STAKES[2]),
    ]
    assert state(0) == []
    # The indices at the earlier block still describe the earlier state.
    ids = sorted(chain.keys[i].operator_id for i in (1, 3))
    indices = c.check_signatures_indices(
        chain.w3,
        retriever=chain.retriever,
        registry=chain.registry,
        reference_block=before,
        non_signer_ids=ids,
    )
    registry = c.registry_contract(chain.w3, chain.registry)
    stakes = [
        registry.functions.getStakeAtBlockNumberAndIndex(0, before, i, index).call()
        for i, index in zip(ids, indices.non_signer_stake_indices[0], strict=True)
    ]
    by_id = {chain.keys[i].operator_id: STAKES[i] for i in range(4)}
    assert stakes == [by_id[i] for i in ids]
    assert len(indices.quorum_apk_indices) == len(indices.total_stake_indices) == 1
