"""The devnet contracts on a real anvil node, through devnet.contracts."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3
from web3.types import Nonce, TxParams, Wei

from bls import KeyPair, aggregate_g1, aggregate_g2, hash_to_g1, keypair_from_seed
from devnet import contracts as c
from devnet.anvil import Anvil
from devnet.nonsigners import SignerNotInStateError, nonsigner_params_build

ETH = 10**18
STAKES = (10 * ETH, 20 * ETH, 30 * ETH, 40 * ETH)
NEW_BATCH_V3_TOPIC = "0x8801fc966deb2c8f563a103c35c9e80740585c292cd97518587e6e7927e6af55"
BATCH_VERIFIED_TOPIC = "0x8511746b73275e06971968773119b9601fc501d7bdf3824d8754042d148940e2"
# Written by hand from the EigenLayer/Aligned event declarations, not derived from the ABI.
REGISTRY_EVENT_SIGNATURES = {
    "NewPubkeyRegistration": "NewPubkeyRegistration(address,(uint256,uint256),(uint256[2],uint256[2]))",
    "OperatorRegistered": "OperatorRegistered(address,bytes32)",
    "OperatorDeregistered": "OperatorDeregistered(address,bytes32)",
    "OperatorStakeUpdate": "OperatorStakeUpdate(bytes32,uint8,uint96)",
    "OperatorSocketUpdate": "OperatorSocketUpdate(bytes32,string)",
}


def account(name: str) -> LocalAccount:
    return Account.from_key(keccak(text=f"test-contracts/{name}"))


@dataclass
class Net:
    anvil: Anvil
    w3: Web3
    deployment: c.Deployment
    owner: LocalAccount
    aggregator: LocalAccount
    batcher: LocalAccount
    operators: list[LocalAccount]
    keys: list[KeyPair]

    @property
    def registry(self) -> str:
        return self.deployment.registry

    @property
    def service_manager(self) -> str:
        return self.deployment.service_manager

    def fund(self, *accounts: LocalAccount) -> None:
        for acct in accounts:
            self.anvil.rpc("anvil_setBalance", [acct.address, hex(100 * ETH)])

    def create_task(self, root: bytes) -> int:
        receipt = c.create_task(
            self.w3,
            service_manager=self.service_manager,
            batcher=self.batcher,
            batch_merkle_root=root,
            data_pointer="http://batches.local/" + root.hex(),
            fee_limit=10**15,
        )
        return int(receipt["blockNumber"])

    @property
    def retriever(self) -> str:
        return self.deployment.operator_state_retriever

    def params(
        self, root: bytes, signers: Sequence[int], block: int | None = None
    ) -> c.NonSignerStakesAndSignature:
        """The struct eigensdk's aggregation service would build for these signers (at the task's block)."""
        message = c.batch_identifier(batch_merkle_root=root, sender=self.batcher.address)
        if block is None:
            manager = c.service_manager_contract(self.w3, self.service_manager)
            block = (
                int(manager.functions.batchesState(message).call()[0]) or int(self.w3.eth.block_number) - 1
            )
        keys = [self.keys[i] for i in signers]
        return nonsigner_params_build(
            self.w3,
            registry=self.registry,
            retriever=self.retriever,
            task_created_block=block,
            signatures={k.operator_id: k.sign(message) for k in keys},
            signer_keys_g2={k.operator_id: k.public_key_g2 for k in keys},
        )

    def respond(self, root: bytes, signers: Sequence[int], **overrides: Any) -> Any:
        """respondToTaskV2; ``overrides`` replace fields of the struct (sigma, apk_g2, ...) or call arguments."""
        call_keys = {"aggregator", "gas", "max_fee_per_gas", "params"}
        params = overrides.pop("params", None) or self.params(root, signers)
        fields = {k: v for k, v in overrides.items() if k not in call_keys}
        kwargs: dict[str, Any] = {
            "service_manager": self.service_manager,
            "aggregator": self.aggregator,
            "batch_merkle_root": root,
            "sender": self.batcher.address,
            "params": replace(params, **fields),
        }
        kwargs.update({k: v for k, v in overrides.items() if k in call_keys})
        return c.respond_to_task(self.w3, **kwargs)


@pytest.fixture(scope="module")
def net(module_anvil: Anvil) -> Net:
    return net_build(module_anvil)


def net_build(module_anvil: Anvil) -> Net:
    """Registry + service manager + retriever with 4 operators staking 10, 20, 30 and 40 ETH; the batcher has
    deposited 1 ETH for responses."""
    w3 = Web3(Web3.HTTPProvider(module_anvil.url))
    owner, aggregator, batcher = account("owner"), account("aggregator"), account("batcher")
    operators = [account(f"operator-{i}") for i in range(4)]
    keys = [keypair_from_seed("test-contracts", i) for i in range(4)]
    for acct in (owner, aggregator, batcher, *operators):
        module_anvil.rpc("anvil_setBalance", [acct.address, hex(100 * ETH)])
    deployment = c.deploy_contracts(w3, deployer=owner, aggregator=aggregator.address)
    for i, (operator, key) in enumerate(zip(operators, keys, strict=True)):
        c.register_operator(w3, registry=deployment.registry, account=operator, keypair=key, socket=f"op-{i}")
        c.set_operator_stake(
            w3, registry=deployment.registry, owner=owner, operator_id=key.operator_id, stake=STAKES[i]
        )
    c.deposit_to_batcher(w3, service_manager=deployment.service_manager, account=batcher, amount=ETH)
    return Net(module_anvil, w3, deployment, owner, aggregator, batcher, operators, keys)


@pytest.fixture
def chain(net: Net) -> Iterator[Net]:
    """The shared deployment, reverted to its snapshot after each test."""
    snapshot = net.anvil.rpc("evm_snapshot")
    try:
        yield net
    finally:
        assert net.anvil.rpc("evm_revert", [snapshot]) is True


def events(chain: Net, receipt: Any) -> list[c.DecodedEvent]:
    return c.decode_events(chain.w3, receipt)


def canonical(param: dict[str, Any]) -> str:
    if param["type"].startswith("tuple"):
        return "(" + ",".join(canonical(p) for p in param["components"]) + ")" + param["type"][5:]
    return str(param["type"])


def abi_event_topics() -> dict[str, str]:
    topics = {}
    for name in c.CONTRACT_NAMES:
        for item in c.load_artifact(name)["abi"]:
            if item["type"] == "event":
                signature = f"{item['name']}({','.join(canonical(p) for p in item['inputs'])})"
                topics[item["name"]] = "0x" + keccak(text=signature).hex()
    return topics


# ------------------------------------------------------------------------------------------- events, hashing


def test_it_declares_every_event_with_the_documented_topic0() -> None:
    topics = abi_event_topics()
    assert topics["NewBatchV3"] == NEW_BATCH_V3_TOPIC
    assert topics["BatchVerified"] == BATCH_VERIFIED_TOPIC
    assert topics["NewBatchV2"] == "0x" + keccak(text="NewBatchV2(bytes32,address,uint32,string)").hex()
    for name, signature in REGISTRY_EVENT_SIGNATURES.items():
        assert topics[name] == "0x" + keccak(text=signature).hex(), name
    assert set(topics) == set(c.EVENT_SIGNATURES)
    for name in c.EVENT_SIGNATURES:
        assert c.event_topic(name) == topics[name], name


def test_it_hashes_to_g1_like_the_python_bls(chain: Net) -> None:
    registry = c.registry_contract(chain.w3, chain.registry)
    messages = [bytes(32), b"\xff" * 32, bytes(range(32)), *(keccak(text=f"message {i}") for i in range(5))]
    for message in messages:
        assert tuple(registry.functions.hashToG1(message).call()) == hash_to_g1(message).to_evm()

    operator = chain.operators[0].address
    digest = c.pop_message(chain_id=chain.deployment.chain_id, registry=chain.registry, operator=operator)
    assert registry.functions.pubkeyRegistrationMessageDigest(operator).call() == digest
    assert (
        tuple(registry.functions.pubkeyRegistrationMessageHash(operator).call())
        == hash_to_g1(digest).to_evm()
    )


# ------------------------------------------------------------------------------------------- registry


def test_it_registers_an_operator_with_the_eigenlayer_events(chain: Net) -> None:
    operator, key = account("newcomer"), keypair_from_seed("test-contracts", 100)
    chain.fund(operator)
    receipt = c.register_operator(
        chain.w3, registry=chain.registry, account=operator, keypair=key, socket="http://newcomer:9000"
    )

    logs = events(chain, receipt)
    assert [e.name for e in logs] == ["NewPubkeyRegistration", "OperatorSocketUpdate", "OperatorRegistered"]
    assert all(e.address == chain.registry for e in logs)
    pubkey = logs[0].args
    assert pubkey["operator"] == operator.address
    assert tuple(pubkey["pubkeyG1"].values()) == key.public_key_g1.to_evm()
    g2 = key.public_key_g2.to_evm()
    assert (tuple(pubkey["pubkeyG2"]["X"]), tuple(pubkey["pubkeyG2"]["Y"])) == g2
    assert logs[1].args == {"operatorId": key.operator_id, "socket": "http://newcomer:9000"}
    assert logs[2].args == {"operator": operator.address, "operatorId": key.operator_id}

    registry = c.registry_contract(chain.w3, chain.registry)
    assert registry.functions.getOperatorId(operator.address).call() == key.operator_id
    assert registry.functions.isRegistered(key.operator_id).call() is True
    assert tuple(registry.functions.getOperatorPubkeyG1(key.operator_id).call()) == key.public_key_g1.to_evm()
    assert receipt["gasUsed"] < 550_000  # with the bitmap and apk histories EigenLayer keeps


def _register_raw(
    chain: Net, operator: LocalAccount, pk_key: KeyPair, g2_key: KeyPair, signature: Any
) -> Any:
    function = c.registry_contract(chain.w3, chain.registry).functions.registerOperator(
        pk_key.public_key_g1.to_evm(), g2_key.public_key_g2.to_evm(), signature.to_evm(), "socket"
    )
    return c.transact(chain.w3, function, account=operator)


def test_it_rejects_an_invalid_proof_of_possession(chain: Net) -> None:
    operator, other = account("pop-operator"), account("pop-other")
    key, key2 = keypair_from_seed("test-contracts", 200), keypair_from_seed("test-contracts", 201)
    chain.fund(operator)
    chain_id = chain.deployment.chain_id

    # Signed for another operator address (a replayed proof).
    replayed = key.sign(c.pop_message(chain_id=chain_id, registry=chain.registry, operator=other.address))
    with pytest.raises(c.ContractRevertError) as excinfo:
        _register_raw(chain, operator, key, key, replayed)
    assert excinfo.value.error_name == "InvalidProofOfPossession"

    # G1 and G2 keys of different secrets (a rogue G1 key), with a valid signature for the G2 key.
    good = key2.sign(c.pop_message(chain_id=chain_id, registry=chain.registry, operator=operator.address))
    with pytest.raises(c.ContractRevertError) as excinfo:
        _register_raw(chain, operator, key, key2, good)
    assert excinfo.value.error_name == "InvalidProofOfPossession"
    assert "InvalidProofOfPossession()" in str(excinfo.value)

    # The proof for another chain id does not count either.
    wrong_chain = key.sign(
        c.pop_message(chain_id=chain_id + 1, registry=chain.registry, operator=operator.address)
    )
    with pytest.raises(c.ContractRevertError, match="InvalidProofOfPossession"):
        _register_raw(chain, operator, key, key, wrong_chain)

    registry = c.registry_contract(chain.w3, chain.registry)
    assert registry.functions.getOperatorId(operator.address).call() == bytes(32)


def test_it_rejects_a_used_key_a_double_registration_and_a_zero_key(chain: Net) -> None:
    thief = account("thief")
    chain.fund(thief)
    with pytest.raises(c.ContractRevertError) as excinfo:
        c.register_operator(
            chain.w3, registry=chain.registry, account=thief, keypair=chain.keys[0], socket="x"
        )
    assert excinfo.value.error_name == "PubkeyAlreadyRegistered"
    assert excinfo.value.error_args == (chain.keys[0].operator_id, chain.operators[0].address.lower())

    with pytest.raises(c.ContractRevertError) as excinfo:
        c.register_operator(
            chain.w3, registry=chain.registry, account=chain.operators[1], keypair=chain.keys[1], socket="x"
        )
    assert excinfo.value.error_name == "OperatorAlreadyRegistered"

    function = c.registry_contract(chain.w3, chain.registry).functions.registerOperator(
        (0, 0), chain.keys[0].public_key_g2.to_evm(), (0, 0), "x"
    )
    with pytest.raises(c.ContractRevertError, match=r"ZeroPubkey\(\)"):
        c.transact(chain.w3, function, account=thief)


def test_it_deregisters_and_reregisters_with_the_same_key(chain: Net) -> None:
    operator, key = chain.operators[3], chain.keys[3]
    receipt = c.deregister_operator(chain.w3, registry=chain.registry, account=operator)
    block = int(receipt["blockNumber"])
    assert [(e.name, e.args) for e in events(chain, receipt)] == [
        ("OperatorStakeUpdate", {"operatorId": key.operator_id, "quorumNumber": 0, "stake": 0}),
        ("OperatorDeregistered", {"operator": operator.address, "operatorId": key.operator_id}),
    ]
    registry = c.registry_contract(chain.w3, chain.registry)
    assert registry.functions.isRegistered(key.operator_id).call() is False
    assert (
        c.stake_at_block(chain.w3, registry=chain.registry, operator_id=key.operator_id, block_number=block)
        == 0
    )
    assert (
        c.stake_at_block(
            chain.w3, registry=chain.registry, operator_id=key.operator_id, block_number=block - 1
        )
        == STAKES[3]
    )
    assert c.total_stake_at_block(chain.w3, registry=chain.registry, block_number=block) == sum(STAKES[:3])
    with pytest.raises(c.ContractRevertError, match="OperatorNotRegistered"):
        c.deregister_operator(chain.w3, registry=chain.registry, account=operator)
    with pytest.raises(c.ContractRevertError, match="OperatorIdNotRegistered"):
        c.set_operator_stake(
            chain.w3, registry=chain.registry, owner=chain.owner, operator_id=key.operator_id, stake=1
        )

    # Another key for the same operator is refused: an operator's key is bound for good, as in EigenLayer.
    with pytest.raises(c.ContractRevertError) as excinfo:
        c.register_operator(
            chain.w3,
            registry=chain.registry,
            account=operator,
            keypair=keypair_from_seed("test-contracts", 300),
            socket="x",
        )
    assert excinfo.value.error_name == "PubkeyMismatch"

    receipt = c.register_operator(
        chain.w3, registry=chain.registry, account=operator, keypair=key, socket="back"
    )
    # The key was registered before, so no second NewPubkeyRegistration (as BLSApkRegistry).
    assert [e.name for e in events(chain, receipt)] == ["OperatorSocketUpdate", "OperatorRegistered"]
    assert registry.functions.isRegistered(key.operator_id).call() is True
    assert registry.functions.getOperatorStake(key.operator_id).call() == 0


def test_it_deregisters_an_operator_without_stake_without_a_stake_event(chain: Net) -> None:
    operator, key = account("no-stake"), keypair_from_seed("test-contracts", 400)
    chain.fund(operator)
    c.register_operator(chain.w3, registry=chain.registry, account=operator, keypair=key, socket="x")
    receipt = c.deregister_operator(chain.w3, registry=chain.registry, account=operator)
    assert [e.name for e in events(chain, receipt)] == ["OperatorDeregistered"]


def test_it_lets_only_the_owner_set_stakes(chain: Net) -> None:
    with pytest.raises(c.ContractRevertError) as excinfo:
        c.set_operator_stake(
            chain.w3,
            registry=chain.registry,
            owner=chain.operators[0],
            operator_id=chain.keys[0].operator_id,
            stake=10**30 // 10**6,
        )
    assert excinfo.value.error_name == "CallerIsNotOwner"
    assert excinfo.value.error_args == (chain.operators[0].address.lower(),)

    receipt = c.set_operator_stake(
        chain.w3, registry=chain.registry, owner=chain.owner, operator_id=chain.keys[0].operator_id, stake=5
    )
    assert [(e.name, e.args) for e in events(chain, receipt)] == [
        ("OperatorStakeUpdate", {"operatorId": chain.keys[0].operator_id, "quorumNumber": 0, "stake": 5})
    ]


def test_it_updates_sockets(chain: Net) -> None:
    receipt = c.update_socket(
        chain.w3, registry=chain.registry, account=chain.operators[2], socket="http://new"
    )
    assert [(e.name, e.args) for e in events(chain, receipt)] == [
        ("OperatorSocketUpdate", {"operatorId": chain.keys[2].operator_id, "socket": "http://new"})
    ]
    with pytest.raises(c.ContractRevertError, match="OperatorNotRegistered"):
        c.update_socket(chain.w3, registry=chain.registry, account=chain.batcher, socket="x")


def test_it_keeps_the_stake_history_per_block(chain: Net) -> None:
    operator_id = chain.keys[0].operator_id

    def set_stake(stake: int) -> int:
        receipt = c.set_operator_stake(
            chain.w3, registry=chain.registry, owner=chain.owner, operator_id=operator_id, stake=stake
        )
        return int(receipt["blockNumber"])

    start = int(chain.w3.eth.block_number)
    history = [(set_stake(stake), stake) for stake in (1 * ETH, 2 * ETH, 3 * ETH)]
    chain.anvil.rpc("anvil_mine", ["0x3"])
    history.append((set_stake(7 * ETH), 7 * ETH))

    def stake_at(block: int) -> int:
        return c.stake_at_block(
            chain.w3, registry=chain.registry, operator_id=operator_id, block_number=block
        )

    def total_at(block: int) -> int:
        return c.total_stake_at_block(chain.w3, registry=chain.registry, block_number=block)

    assert stake_at(start) == STAKES[0]
    assert total_at(start) == sum(STAKES)
    for block, stake in history:
        assert stake_at(block) == stake
        assert total_at(block) == sum(STAKES[1:]) + stake
    assert stake_at(history[2][0] + 2) == 3 * ETH  # mined, empty blocks keep the last value
    assert stake_at(history[-1][0] + 1000) == 7 * ETH
    assert stake_at(0) == 0
    assert total_at(0) == 0


def test_it_overwrites_stake_updates_within_one_block(chain: Net) -> None:
    registry = c.registry_contract(chain.w3, chain.registry)
    operator_id = chain.keys[1].operator_id
    nonce = chain.w3.eth.get_transaction_count(chain.owner.address)
    chain.anvil.rpc("evm_setAutomine", [False])
    try:
        for offset, stake in enumerate((1 * ETH, 5 * ETH)):
            params: TxParams = {
                "from": chain.owner.address,
                "nonce": Nonce(nonce + offset),
                "gas": 200_000,
                "maxFeePerGas": Wei(10 * 10**9),
                "maxPriorityFeePerGas": Wei(10**9),
            }
            tx = registry.functions.setOperatorStake(operator_id, stake).build_transaction(params)
            signed = chain.owner.sign_transaction(cast(dict[str, Any], tx))
            chain.w3.eth.send_raw_transaction(signed.raw_transaction)
        chain.anvil.rpc("evm_mine")
    finally:
        chain.anvil.rpc("evm_setAutomine", [True])
    block = int(chain.w3.eth.block_number)
    assert len(chain.w3.eth.get_block(block)["transactions"]) == 2
    assert registry.functions.getOperatorStakeHistoryLength(operator_id).call() == 2
    assert c.stake_at_block(
        chain.w3, registry=chain.registry, operator_id=operator_id, block_number=block
    ) == (5 * ETH)
    assert c.total_stake_at_block(chain.w3, registry=chain.registry, block_number=block) == (
        STAKES[0] + 5 * ETH + STAKES[2] + STAKES[3]
    )


# ------------------------------------------------------------------------------------------- service manager


def test_it_creates_a_task_with_new_batch_v3(chain: Net) -> None:
    root = keccak(text="batch create")
    receipt = c.create_task(
        chain.w3,
        service_manager=chain.service_manager,
        batcher=chain.batcher,
        batch_merkle_root=root,
        data_pointer="http://batches.local/b1",
        fee_limit=12345,
    )
    block = int(receipt["blockNumber"])
    (log,) = receipt["logs"]
    assert "0x" + bytes(log["topics"][0]).hex() == NEW_BATCH_V3_TOPIC
    assert bytes(log["topics"][1]) == root
    (event,) = events(chain, receipt)
    assert event.name == "NewBatchV3"
    assert event.address == chain.service_manager
    assert event.args == {
        "batchMerkleRoot": root,
        "senderAddress": chain.batcher.address,
        "taskCreatedBlock": block,
        "batchDataPointer": "http://batches.local/b1",
        "respondToTaskFeeLimit": 12345,
    }
    manager = c.service_manager_contract(chain.w3, chain.service_manager)
    identifier = c.batch_identifier(batch_merkle_root=root, sender=chain.batcher.address)
    assert manager.functions.batchIdentifierHash(root, chain.batcher.address).call() == identifier
    assert manager.functions.batchesState(identifier).call() == [block, False, 12345]

    with pytest.raises(c.ContractRevertError) as excinfo:
        chain.create_task(root)
    assert excinfo.value.error_name == "BatchAlreadySubmitted"
    assert excinfo.value.error_args == (identifier,)

    # The same root from another sender is another batch.
    other = account("other-batcher")
    chain.fund(other)
    c.create_task(
        chain.w3,
        service_manager=chain.service_manager,
        batcher=other,
        batch_merkle_root=root,
        data_pointer="x",
        fee_limit=0,
    )


def test_it_verifies_an_aggregate_of_two_thirds_of_the_stake(chain: Net) -> None:
    root = keccak(text="batch quorum")
    created = chain.create_task(root)
    # 30 + 40 = 70% of the stake; signer ids in any order (the binding sorts them).
    receipt = chain.respond(root, [3, 2])
    logs = receipt["logs"]
    assert len(logs) == 1
    assert "0x" + bytes(logs[0]["topics"][0]).hex() == BATCH_VERIFIED_TOPIC
    (event,) = events(chain, receipt)
    assert event.name == "BatchVerified"
    assert event.address == chain.service_manager
    assert event.args == {"batchMerkleRoot": root, "senderAddress": chain.batcher.address}
    identifier = c.batch_identifier(batch_merkle_root=root, sender=chain.batcher.address)
    manager = c.service_manager_contract(chain.w3, chain.service_manager)
    assert manager.functions.batchesState(identifier).call() == [created, True, 10**15]

    root2 = keccak(text="batch quorum all")
    chain.create_task(root2)
    assert chain.respond(root2, [0, 1, 2, 3])["status"] == 1


def test_it_rejects_an_aggregate_below_two_thirds_of_the_stake(chain: Net) -> None:
    root = keccak(text="batch short")
    chain.create_task(root)
    with pytest.raises(c.ContractRevertError) as excinfo:
        chain.respond(root, [0, 1, 2])  # 60%
    assert excinfo.value.error_name == "InvalidQuorumThreshold"
    assert excinfo.value.error_args == (60 * ETH, 100 * ETH)


def test_it_rejects_an_aggregate_with_one_wrong_signature(chain: Net) -> None:
    root = keccak(text="batch bad signer")
    chain.create_task(root)
    message = c.batch_identifier(batch_merkle_root=root, sender=chain.batcher.address)
    keys = chain.keys[1:]
    signatures = [k.sign(message) for k in keys[:-1]] + [keys[-1].sign(keccak(text="another batch"))]
    with pytest.raises(c.ContractRevertError) as excinfo:
        chain.respond(root, [1, 2, 3], sigma=aggregate_g1(signatures))
    assert excinfo.value.error_name == "InvalidSignature"

    # A G2 aggregate that does not match the signers' G1 keys is refused as well.
    with pytest.raises(c.ContractRevertError, match="InvalidSignature"):
        chain.respond(root, [1, 2, 3], apk_g2=aggregate_g2(k.public_key_g2 for k in chain.keys[:3]))


def test_it_rejects_a_second_response(chain: Net) -> None:
    root = keccak(text="batch twice")
    chain.create_task(root)
    chain.respond(root, [1, 2, 3])
    identifier = c.batch_identifier(batch_merkle_root=root, sender=chain.batcher.address)
    with pytest.raises(c.ContractRevertError) as excinfo:
        chain.respond(root, [1, 2, 3])
    assert excinfo.value.error_name == "BatchAlreadyResponded"
    assert excinfo.value.error_args == (identifier,)
    assert excinfo.value.receipt is None  # caught by the gas estimate, nothing was sent

    # With an explicit gas limit the transaction is mined, fails, and is decoded from a replay.
    with pytest.raises(c.ContractRevertError) as excinfo:
        chain.respond(root, [1, 2, 3], gas=600_000)
    assert excinfo.value.error_name == "BatchAlreadyResponded"
    assert excinfo.value.receipt is not None
    assert excinfo.value.receipt["status"] == 0


def test_it_rejects_an_unknown_batch_and_a_caller_other_than_the_aggregator(chain: Net) -> None:
    root = keccak(text="batch unknown")
    with pytest.raises(c.ContractRevertError) as excinfo:
        chain.respond(root, [1, 2, 3])
    assert excinfo.value.error_name == "BatchDoesNotExist"
    assert excinfo.value.error_args == (
        c.batch_identifier(batch_merkle_root=root, sender=chain.batcher.address),
    )

    chain.create_task(root)
    with pytest.raises(c.ContractRevertError) as excinfo:
        chain.respond(root, [1, 2, 3], aggregator=chain.batcher)
    assert excinfo.value.error_name == "SenderIsNotAggregator"
    assert excinfo.value.error_args == (chain.batcher.address.lower(), chain.aggregator.address.lower())


def test_it_judges_a_task_at_the_stake_of_its_creation_block(chain: Net) -> None:
    root = keccak(text="batch history")
    created = chain.create_task(root)
    # After the task: operator 0 grows to 1000 ETH, so 30 + 40 is now far below two thirds of the total,
    # and operator 3 drops out entirely.
    c.set_operator_stake(
        chain.w3,
        registry=chain.registry,
        owner=chain.owner,
        operator_id=chain.keys[0].operator_id,
        stake=1000 * ETH,
    )
    c.deregister_operator(chain.w3, registry=chain.registry, account=chain.operators[3])
    now = int(chain.w3.eth.block_number)
    assert c.total_stake_at_block(chain.w3, registry=chain.registry, block_number=now) == 1050 * ETH
    assert (
        c.stake_at_block(
            chain.w3, registry=chain.registry, operator_id=chain.keys[3].operator_id, block_number=created
        )
        == 40 * ETH
    )
    assert c.total_stake_at_block(chain.w3, registry=chain.registry, block_number=created) == 100 * ETH

    receipt = chain.respond(root, [2, 3])
    assert [e.name for e in events(chain, receipt)] == ["BatchVerified"]

    # A stake given only after the task was created does not count for it.
    late, late_key = account("late"), keypair_from_seed("test-contracts", 600)
    chain.fund(late)
    root2 = keccak(text="batch late")
    chain.create_task(root2)
    c.register_operator(chain.w3, registry=chain.registry, account=late, keypair=late_key, socket="x")
    c.set_operator_stake(
        chain.w3,
        registry=chain.registry,
        owner=chain.owner,
        operator_id=late_key.operator_id,
        stake=5000 * ETH,
    )
    chain.keys.append(late_key)
    try:
        with pytest.raises(SignerNotInStateError):
            chain.respond(root2, [4])
    finally:
        chain.keys.pop()


def test_it_responds_to_three_signers_within_a_gas_budget(chain: Net) -> None:
    root = keccak(text="batch gas")
    chain.create_task(root)
    receipt = chain.respond(root, [1, 2, 3])
    # One pairing (~113k gas on cancun) plus three signers' stake and key look-ups.
    assert receipt["gasUsed"] < 300_000
