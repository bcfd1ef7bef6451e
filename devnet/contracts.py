"""Python bindings for the devnet contracts (OperatorRegistry, AlignedServiceManager, OperatorStateRetriever).

Artifacts come from ``devnet/contracts/build`` (``node devnet/contracts/compile.mjs``). Every transaction is
signed locally with an eth_account ``LocalAccount`` and waits for its receipt; a revert raises
``ContractRevertError`` carrying the decoded custom error (name and arguments). Addresses are returned as
lowercase 0x hex.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, NoReturn, cast

from eth_abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_canonical_address
from hexbytes import HexBytes
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.exceptions import ContractLogicError, TimeExhausted, TransactionNotFound
from web3.types import TxParams, TxReceipt, Wei

from bls import G1Point, G2Point, KeyPair
from chain.abi import EVENT_SIGNATURES as ABI_EVENT_SIGNATURES
from chain.abi import TOPICS
from chain.contracts import CheckSignaturesIndices, OperatorState
from chain.contracts import NonSignerStakesAndSignature as ChainNonSignerStakesAndSignature
from chain.transactions import poll_backoff

ARTIFACTS_DIR: Path = Path(__file__).resolve().parent / "contracts" / "build"
CONTRACT_NAMES = ("OperatorRegistry", "AlignedServiceManager", "OperatorStateRetriever", "LoadBatcher")

PUBKEY_REGISTRATION_TAG = b"AVSControlPlane.PubkeyRegistration"
QUORUM_NUMBER = 0
QUORUM_THRESHOLD_PERCENTAGE = 67

#: Canonical event signatures (topic0 = keccak256 of these): the control plane's own table, so the devnet's
#: contracts and the ingester can never disagree. NewBatchV2 is declared but never emitted here.
EVENT_SIGNATURES = ABI_EVENT_SIGNATURES

# Reverts without a custom error: Error(string) and Panic(uint256).
_BUILTIN_ERRORS: dict[bytes, tuple[str, list[str]]] = {
    bytes.fromhex("08c379a0"): ("Error", ["string"]),
    bytes.fromhex("4e487b71"): ("Panic", ["uint256"]),
}
_GAS_MARGIN_NUMERATOR = 12  # estimated gas * 1.2: the estimate is exact for the state it was run on
_GAS_MARGIN_DENOMINATOR = 10
_DEFAULT_PRIORITY_FEE = 10**9  # 1 gwei
_RECEIPT_TIMEOUT = 120.0


class ContractRevertError(RuntimeError):
    """A contract call or transaction reverted.

    ``error_name`` is the decoded custom error ("InvalidSignature", "Error" for require strings, "Panic"),
    or None when the revert data was empty or unknown; ``error_args`` its decoded arguments; ``data`` the raw
    revert data as 0x hex; ``receipt`` the mined receipt when the transaction was mined and failed.
    """

    def __init__(
        self,
        *,
        function: str,
        error_name: str | None,
        error_args: tuple[Any, ...] = (),
        data: str = "0x",
        receipt: TxReceipt | None = None,
        detail: str = "",
    ) -> None:
        self.function = function
        self.error_name = error_name
        self.error_args = error_args
        self.data = data
        self.receipt = receipt
        if error_name is None:
            reason = f"reverted without a known error (data {data})"
        else:
            reason = f"reverted with {error_name}({', '.join(_format_arg(a) for a in error_args)})"
        super().__init__(f"{function} {reason}{f': {detail}' if detail else ''}")


def _format_arg(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return repr(value)


@dataclass(frozen=True)
class Deployment:
    registry: str
    service_manager: str
    operator_state_retriever: str
    block_number: int
    chain_id: int


@dataclass(frozen=True)
class NonSignerStakesAndSignature:
    """EigenLayer's IBLSSignatureChecker.NonSignerStakesAndSignature, for quorum 0."""

    non_signer_quorum_bitmap_indices: tuple[int, ...]
    non_signer_pubkeys: tuple[G1Point, ...]
    quorum_apks: tuple[G1Point, ...]
    apk_g2: G2Point
    sigma: G1Point
    quorum_apk_indices: tuple[int, ...]
    total_stake_indices: tuple[int, ...]
    non_signer_stake_indices: tuple[tuple[int, ...], ...]

    def to_abi(self) -> tuple[Any, ...]:
        """The struct as web3 encodes it (G2 in [imag, real] order)."""
        return (
            list(self.non_signer_quorum_bitmap_indices),
            [p.to_evm() for p in self.non_signer_pubkeys],
            [p.to_evm() for p in self.quorum_apks],
            self.apk_g2.to_evm(),
            self.sigma.to_evm(),
            list(self.quorum_apk_indices),
            list(self.total_stake_indices),
            [list(i) for i in self.non_signer_stake_indices],
        )

    def to_chain(self) -> ChainNonSignerStakesAndSignature:
        """The same struct as the chain stage encodes it (points as EVM integers)."""
        return ChainNonSignerStakesAndSignature(
            non_signer_quorum_bitmap_indices=self.non_signer_quorum_bitmap_indices,
            non_signer_pubkeys=tuple(p.to_evm() for p in self.non_signer_pubkeys),
            quorum_apks=tuple(p.to_evm() for p in self.quorum_apks),
            apk_g2=self.apk_g2.to_evm(),
            sigma=self.sigma.to_evm(),
            quorum_apk_indices=self.quorum_apk_indices,
            total_stake_indices=self.total_stake_indices,
            non_signer_stake_indices=self.non_signer_stake_indices,
        )


# ---------------------------------------------------------------------------------------------- artifacts


@cache
def _read_artifact(name: str) -> str:
    path = ARTIFACTS_DIR / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"contract artifact {path} is missing: run node devnet/contracts/compile.mjs")
    return path.read_text()


def load_artifact(name: str) -> dict[str, Any]:
    """The compiled artifact {"contractName", "abi", "bytecode", "compiler"} of one deployable contract."""
    if name not in CONTRACT_NAMES:
        raise ValueError(f"unknown contract {name!r}; expected one of {', '.join(CONTRACT_NAMES)}")
    artifact: dict[str, Any] = json.loads(_read_artifact(name))
    return artifact


def _canonical_type(param: dict[str, Any]) -> str:
    kind: str = param["type"]
    if kind.startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in param["components"])
        return f"({inner}){kind[len('tuple') :]}"
    return kind


@cache
def _known_errors() -> dict[bytes, tuple[str, list[str]]]:
    errors = dict(_BUILTIN_ERRORS)
    for name in CONTRACT_NAMES:
        for item in load_artifact(name)["abi"]:
            if item["type"] != "error":
                continue
            types = [_canonical_type(p) for p in item["inputs"]]
            signature = f"{item['name']}({','.join(types)})"
            errors[keccak(text=signature)[:4]] = (item["name"], types)
    return errors


def decode_revert(data: bytes | str | None) -> tuple[str | None, tuple[Any, ...]]:
    """(error name, arguments) of revert data, or (None, ()) when it is empty or not a known error.

    Arguments are as eth_abi decodes them: bytes32 as bytes, addresses as lowercase 0x hex, integers as int.
    """
    if data is None:
        return None, ()
    raw = bytes.fromhex(data.removeprefix("0x")) if isinstance(data, str) else bytes(data)
    if len(raw) < 4:
        return None, ()
    known = _known_errors().get(raw[:4])
    if known is None:
        return None, ()
    name, types = known
    try:
        return name, tuple(abi_decode(types, raw[4:]))
    except Exception:
        return name, ()


def event_topic(name: str) -> str:
    """topic0 of an event, as lowercase 0x hex."""
    return TOPICS[name]


# ---------------------------------------------------------------------------------------------- contracts


def _checksum(address: str) -> Any:
    return Web3.to_checksum_address(address)


@lru_cache(maxsize=256)
def _bound_contract(w3: Web3, name: str, address: str) -> Contract:
    # Parsing an artifact's ABI and building its contract class costs more than the eth_call it serves (the
    # devnet aggregator looked a stake up this way for every signature): built once per Web3 and address.
    return w3.eth.contract(address=_checksum(address), abi=load_artifact(name)["abi"])


def registry_contract(w3: Web3, address: str) -> Contract:
    return _bound_contract(w3, "OperatorRegistry", address)


def service_manager_contract(w3: Web3, address: str) -> Contract:
    return _bound_contract(w3, "AlignedServiceManager", address)


def retriever_contract(w3: Web3, address: str) -> Contract:
    return _bound_contract(w3, "OperatorStateRetriever", address)


# ---------------------------------------------------------------------------------------------- transactions


def _revert_data(exc: ContractLogicError) -> str | None:
    data = exc.data
    if isinstance(data, dict):
        data = data.get("data")
    return data if isinstance(data, str) else None


def revert_error(
    function: str, *, data: str | None, message: str = "", receipt: TxReceipt | None = None
) -> ContractRevertError:
    """A revert (its data, and the node's message when the data names no known error) as the error to raise."""
    name, args = decode_revert(data)
    return ContractRevertError(
        function=function,
        error_name=name,
        error_args=args,
        data=data or "0x",
        receipt=receipt,
        detail="" if name else message,
    )


def _raise_revert(function: str, exc: ContractLogicError, receipt: TxReceipt | None = None) -> NoReturn:
    raise revert_error(
        function, data=_revert_data(exc), message=str(exc.message or exc), receipt=receipt
    ) from exc


def _fees(w3: Web3, max_fee_per_gas: int | None) -> tuple[int, int]:
    """(maxFeePerGas, maxPriorityFeePerGas) of an EIP-1559 transaction."""
    if max_fee_per_gas is not None:
        return max_fee_per_gas, min(_DEFAULT_PRIORITY_FEE, max_fee_per_gas)
    base_fee = int(w3.eth.get_block("latest").get("baseFeePerGas", 0) or 0)
    return 2 * base_fee + _DEFAULT_PRIORITY_FEE, _DEFAULT_PRIORITY_FEE


def transact(
    w3: Web3,
    call: ContractFunction | ContractConstructor,
    *,
    account: LocalAccount,
    label: str | None = None,
    gas: int | None = None,
    max_fee_per_gas: int | None = None,
    value: int = 0,
) -> TxReceipt:
    """Sign ``call`` with ``account``, send it, wait for its receipt; raise ContractRevertError on revert.

    Without ``gas`` the gas is estimated (+20%), so a revert is caught before anything is sent; with it, the
    transaction is mined and a failure is replayed to decode its error. Fees are EIP-1559: ``max_fee_per_gas``
    or twice the latest base fee plus a 1 gwei tip.
    """
    label = label or getattr(call, "fn_name", None) or "constructor"
    max_fee, priority_fee = _fees(w3, max_fee_per_gas)
    params: TxParams = {
        "from": account.address,
        "chainId": w3.eth.chain_id,
        "nonce": w3.eth.get_transaction_count(account.address, "pending"),
        "maxFeePerGas": Wei(max_fee),
        "maxPriorityFeePerGas": Wei(priority_fee),
        "value": Wei(value),
    }
    try:
        if gas is None:
            estimate_params: TxParams = {"from": account.address, "value": Wei(value)}
            # "pending": anvil runs a "latest" estimate inside the latest block (same block.number), where
            # a stake update overwrites that block's history entry instead of appending one.
            estimate = call.estimate_gas(estimate_params, block_identifier="pending")
            gas = estimate * _GAS_MARGIN_NUMERATOR // _GAS_MARGIN_DENOMINATOR
        params["gas"] = gas
        tx = call.build_transaction(params)
    except ContractLogicError as exc:
        _raise_revert(label, exc)
    signed = account.sign_transaction(cast(dict[str, Any], tx))
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = receipt_wait(w3, tx_hash, timeout=_RECEIPT_TIMEOUT)
    if receipt["status"] != 1:
        _raise_mined_revert(w3, tx, receipt, label)
    return receipt


def receipt_wait(w3: Web3, tx_hash: HexBytes, *, timeout: float) -> TxReceipt:
    """The transaction's receipt, polled as ``chain.transactions.poll_backoff`` polls (5 ms after sending, then
    ever less often). web3's own wait polls every 0.1 s: on the devnet's chain, which mines a transaction a few
    ms after it is sent, that was 0.1 s lost per transaction, each of them behind the aggregator's send lock.
    """

    def fetch() -> TxReceipt | None:
        try:
            return w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            return None

    try:
        return poll_backoff(fetch, timeout=timeout)
    except TimeoutError:
        raise TimeExhausted(f"transaction {Web3.to_hex(tx_hash)} not mined within {timeout:g} s") from None


def _raise_mined_revert(w3: Web3, tx: TxParams, receipt: TxReceipt, label: str) -> NoReturn:
    """Replay a mined, failed transaction on the state before its block to recover the revert data."""
    replay: TxParams = {
        "from": tx["from"],
        "data": tx["data"],
        "gas": tx["gas"],
        "value": Wei(int(tx.get("value", 0))),
    }
    if "to" in tx:
        replay["to"] = tx["to"]
    for fee in ("maxFeePerGas", "maxPriorityFeePerGas"):  # tx.gasprice matters (respondToTaskV2's fee limit)
        if fee in tx:
            replay[fee] = tx[fee]
    out_of_gas = receipt["gasUsed"] >= int(tx.get("gas", 0))
    try:
        w3.eth.call(replay, block_identifier=max(int(receipt["blockNumber"]) - 1, 0))
    except ContractLogicError as exc:
        _raise_revert(label, exc, receipt)
    raise ContractRevertError(
        function=label,
        error_name=None,
        receipt=receipt,
        detail="out of gas" if out_of_gas else "the replay did not revert",
    )


@dataclass(frozen=True)
class DecodedEvent:
    name: str
    address: str  # lowercase 0x hex
    args: dict[str, Any]
    block_number: int
    log_index: int


@cache
def _event_decoders() -> dict[bytes, tuple[str, str]]:
    """topic0 -> (contract name, event name) for every event in the artifacts."""
    decoders: dict[bytes, tuple[str, str]] = {}
    for contract_name in CONTRACT_NAMES:
        for item in load_artifact(contract_name)["abi"]:
            if item["type"] == "event":
                types = ",".join(_canonical_type(p) for p in item["inputs"])
                decoders[keccak(text=f"{item['name']}({types})")] = (contract_name, item["name"])
    return decoders


def decode_events(w3: Web3, receipt: TxReceipt) -> list[DecodedEvent]:
    """The receipt's logs that are events of the devnet contracts, decoded, in log order."""
    decoded = []
    for log in receipt["logs"]:
        if not log["topics"]:
            continue
        known = _event_decoders().get(bytes(log["topics"][0]))
        if known is None:
            continue
        contract_name, event_name = known
        contract = w3.eth.contract(abi=load_artifact(contract_name)["abi"])
        data = contract.events[event_name]().process_log(log)
        decoded.append(
            DecodedEvent(
                name=event_name,
                address=str(log["address"]).lower(),
                args=dict(data["args"]),
                block_number=int(log["blockNumber"]),
                log_index=int(log["logIndex"]),
            )
        )
    return decoded


def _call(function: ContractFunction, label: str) -> Any:
    try:
        return function.call()
    except ContractLogicError as exc:
        _raise_revert(label, exc)


# ---------------------------------------------------------------------------------------------- deployment


def _deploy(w3: Web3, name: str, *args: Any, deployer: LocalAccount) -> TxReceipt:
    artifact = load_artifact(name)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = transact(w3, factory.constructor(*args), account=deployer, label=f"deploy {name}")
    if receipt["contractAddress"] is None:
        raise RuntimeError(f"{name} deployment produced no contract address")
    return receipt


def deploy_contracts(w3: Web3, *, deployer: LocalAccount, aggregator: str) -> Deployment:
    """Deploy OperatorRegistry (owned by ``deployer``), AlignedServiceManager(registry, aggregator) and
    OperatorStateRetriever."""
    registry_receipt = _deploy(w3, "OperatorRegistry", deployer=deployer)
    registry_address = str(registry_receipt["contractAddress"])
    manager_receipt = _deploy(
        w3, "AlignedServiceManager", registry_address, _checksum(aggregator), deployer=deployer
    )
    retriever_receipt = _deploy(w3, "OperatorStateRetriever", deployer=deployer)
    return Deployment(
        registry=registry_address.lower(),
        service_manager=str(manager_receipt["contractAddress"]).lower(),
        operator_state_retriever=str(retriever_receipt["contractAddress"]).lower(),
        block_number=int(registry_receipt["blockNumber"]),
        chain_id=int(w3.eth.chain_id),
    )


# ---------------------------------------------------------------------------------------------- registry


def _g1(point: G1Point) -> tuple[int, int]:
    return point.to_evm()


def _g2(point: G2Point) -> tuple[tuple[int, int], tuple[int, int]]:
    return point.to_evm()


def _bytes32(value: bytes, name: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise ValueError(f"{name} must be 32 bytes")
    return bytes(value)


def pop_message(*, chain_id: int, registry: str, operator: str) -> bytes:
    """The 32-byte digest a proof of possession signs (OperatorRegistry.pubkeyRegistrationMessageDigest):
    keccak256(abi.encodePacked("AVSControlPlane.PubkeyRegistration", uint256 chainId, registry, operator))."""
    return keccak(
        PUBKEY_REGISTRATION_TAG
        + chain_id.to_bytes(32, "big")
        + to_canonical_address(registry)
        + to_canonical_address(operator)
    )


def register_operator(
    w3: Web3, *, registry: str, account: LocalAccount, keypair: KeyPair, socket: str
) -> TxReceipt:
    """Register ``account`` with ``keypair``; the proof of possession is signed here."""
    message = pop_message(chain_id=int(w3.eth.chain_id), registry=registry, operator=account.address)
    signature = keypair.sign(message)
    function = registry_contract(w3, registry).functions.registerOperator(
        _g1(keypair.public_key_g1), _g2(keypair.public_key_g2), _g1(signature), socket
    )
    return transact(w3, function, account=account, label="registerOperator")


def set_operator_stake(
    w3: Web3, *, registry: str, owner: LocalAccount, operator_id: bytes, stake: int
) -> TxReceipt:
    function = registry_contract(w3, registry).functions.setOperatorStake(
        _bytes32(operator_id, "operator_id"), stake
    )
    return transact(w3, function, account=owner, label="setOperatorStake")


def deregister_operator(w3: Web3, *, registry: str, account: LocalAccount) -> TxReceipt:
    function = registry_contract(w3, registry).functions.deregisterOperator()
    return transact(w3, function, account=account, label="deregisterOperator")


def update_socket(w3: Web3, *, registry: str, account: LocalAccount, socket: str) -> TxReceipt:
    function = registry_contract(w3, registry).functions.updateSocket(socket)
    return transact(w3, function, account=account, label="updateSocket")


def stake_at_block(w3: Web3, *, registry: str, operator_id: bytes, block_number: int) -> int:
    """The operator's stake at the end of ``block_number`` (0 before its first stake)."""
    function = registry_contract(w3, registry).functions.getOperatorStakeAtBlock(
        _bytes32(operator_id, "operator_id"), block_number
    )
    return int(_call(function, "getOperatorStakeAtBlock"))


def total_stake_at_block(w3: Web3, *, registry: str, block_number: int) -> int:
    function = registry_contract(w3, registry).functions.getTotalStakeAtBlock(block_number)
    return int(_call(function, "getTotalStakeAtBlock"))


# ---------------------------------------------------------------------------------------- service manager


def batch_identifier(*, batch_merkle_root: bytes, sender: str) -> bytes:
    """keccak256(abi.encodePacked(batchMerkleRoot, senderAddress)): the message operators sign."""
    return keccak(_bytes32(batch_merkle_root, "batch_merkle_root") + to_canonical_address(sender))


def create_task(
    w3: Web3,
    *,
    service_manager: str,
    batcher: LocalAccount,
    batch_merkle_root: bytes,
    data_pointer: str,
    fee_limit: int,
    value: int = 0,
) -> TxReceipt:
    """createNewTask; ``value`` wei sent along is credited to the batcher's balance."""
    function = service_manager_contract(w3, service_manager).functions.createNewTask(
        _bytes32(batch_merkle_root, "batch_merkle_root"), data_pointer, fee_limit
    )
    return transact(w3, function, account=batcher, label="createNewTask", value=value)


def deposit_to_batcher(
    w3: Web3, *, service_manager: str, account: LocalAccount, amount: int, batcher: str | None = None
) -> TxReceipt:
    """depositToBatcher: credit ``amount`` wei to ``batcher`` (default: the paying account)."""
    function = service_manager_contract(w3, service_manager).functions.depositToBatcher(
        _checksum(batcher or account.address)
    )
    return transact(w3, function, account=account, label="depositToBatcher", value=amount)


def batcher_balance(w3: Web3, *, service_manager: str, batcher: str) -> int:
    """batchersBalances(batcher): the wei the service manager holds to pay for its tasks' responses."""
    function = service_manager_contract(w3, service_manager).functions.batchersBalances(_checksum(batcher))
    return int(_call(function, "batchersBalances"))


def respond_to_task(
    w3: Web3,
    *,
    service_manager: str,
    aggregator: LocalAccount,
    batch_merkle_root: bytes,
    sender: str,
    params: NonSignerStakesAndSignature,
    gas: int | None = None,
    max_fee_per_gas: int | None = None,
) -> TxReceipt:
    """respondToTaskV2 with EigenLayer's NonSignerStakesAndSignature (see devnet.nonsigners to build it)."""
    function = service_manager_contract(w3, service_manager).functions.respondToTaskV2(
        _bytes32(batch_merkle_root, "batch_merkle_root"), _checksum(sender), params.to_abi()
    )
    return transact(
        w3, function, account=aggregator, label="respondToTaskV2", gas=gas, max_fee_per_gas=max_fee_per_gas
    )


# ------------------------------------------------------------------------------------------------ retriever


def check_signatures_indices(
    w3: Web3,
    *,
    retriever: str,
    registry: str,
    reference_block: int,
    non_signer_ids: Sequence[bytes],
) -> CheckSignaturesIndices:
    """getCheckSignaturesIndices(registry, reference_block, quorum 0, non_signer_ids) (ids sorted ascending)."""
    function = retriever_contract(w3, retriever).functions.getCheckSignaturesIndices(
        _checksum(registry),
        reference_block,
        bytes([QUORUM_NUMBER]),
        [_bytes32(i, "id") for i in non_signer_ids],
    )
    try:
        bitmaps, apks, totals, stakes = function.call()
    except ContractLogicError as exc:
        _raise_revert("getCheckSignaturesIndices", exc)
    return CheckSignaturesIndices(
        non_signer_quorum_bitmap_indices=tuple(bitmaps),
        quorum_apk_indices=tuple(apks),
        total_stake_indices=tuple(totals),
        non_signer_stake_indices=tuple(tuple(q) for q in stakes),
    )


def operator_state(w3: Web3, *, retriever: str, registry: str, block_number: int) -> list[OperatorState]:
    """getOperatorState(registry, quorum 0, block_number): quorum 0's operators at the end of that block."""
    function = retriever_contract(w3, retriever).functions.getOperatorState(
        _checksum(registry), bytes([QUORUM_NUMBER]), block_number
    )
    (quorum,) = _call(function, "getOperatorState")
    return [OperatorState(str(o[0]).lower(), bytes(o[1]), int(o[2])) for o in quorum]


def operator_pubkey_g1(w3: Web3, *, registry: str, operator_id: bytes) -> G1Point:
    function = registry_contract(w3, registry).functions.getOperatorPubkeyG1(
        _bytes32(operator_id, "operator_id")
    )
    x, y = _call(function, "getOperatorPubkeyG1")
    return G1Point.from_evm(int(x), int(y))
