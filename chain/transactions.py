"""Signed EIP-1559 transactions over ``ChainClient``: fees, signing, sending, receipts, simulation.

Stateless helpers; the caller owns nonces and what was sent (the standby responder records every transaction it
sends, so a replacement that was mined is still recognised as its own).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import HexStr
from eth_utils import to_checksum_address

from chain.client import ChainClient
from chain.errors import RpcError

# Tip of a fresh transaction; a replacement raises both fees by at least the 10% nodes require, plus a margin.
DEFAULT_PRIORITY_FEE = 10**9
BUMP_NUMERATOR = 1125
BUMP_DENOMINATOR = 1000
# Receipts are asked for this soon after a send (a devnet chain mines within milliseconds), then ever less often.
POLL_FIRST = 0.005
POLL_LONGEST = 0.1

T = TypeVar("T")


@dataclass(frozen=True)
class Fees:
    max_fee: int
    priority_fee: int

    def bumped(self) -> Fees:
        """Fees a node accepts as a replacement of a transaction sent with these (both +12.5%, rounded up)."""
        max_fee = -(-self.max_fee * BUMP_NUMERATOR // BUMP_DENOMINATOR)
        priority = -(-self.priority_fee * BUMP_NUMERATOR // BUMP_DENOMINATOR)
        return Fees(max_fee=max_fee, priority_fee=min(priority, max_fee))


@dataclass(frozen=True)
class SignedTransaction:
    raw: str
    hash: str


@dataclass(frozen=True)
class Receipt:
    transaction_hash: str
    block_number: int
    succeeded: bool
    gas_used: int
    effective_gas_price: int


def account_from_key(private_key: str) -> LocalAccount:
    """The account of a hex private key; ValueError (never echoing the key) when it is not one."""
    text = private_key.strip()
    try:
        return Account.from_key(text if text.startswith("0x") else "0x" + text)
    except Exception:
        raise ValueError("not a 32-byte hex private key") from None


def fees_suggest(client: ChainClient) -> Fees:
    """Twice the latest base fee plus the tip: room for six full blocks of base-fee growth."""
    block = client.call("eth_getBlockByNumber", ["latest", False]) or {}
    base_fee = int(block.get("baseFeePerGas") or "0x0", 16)
    return Fees(max_fee=2 * base_fee + DEFAULT_PRIORITY_FEE, priority_fee=DEFAULT_PRIORITY_FEE)


def transaction_sign(
    account: LocalAccount, *, chain_id: int, nonce: int, to: str, data: str, gas: int, fees: Fees
) -> SignedTransaction:
    signed = account.sign_transaction(
        {
            "type": 2,
            "chainId": chain_id,
            "nonce": nonce,
            "to": HexStr(to_checksum_address(to)),
            "data": HexStr(data),
            "gas": gas,
            "maxFeePerGas": fees.max_fee,
            "maxPriorityFeePerGas": fees.priority_fee,
            "value": 0,
        }
    )
    return SignedTransaction(
        raw="0x" + bytes(signed.raw_transaction).hex(), hash="0x" + bytes(signed.hash).hex()
    )


def transaction_send(client: ChainClient, signed: SignedTransaction) -> str:
    """Send; a node that already has this exact transaction ("already known") counts as sent."""
    try:
        return str(client.call("eth_sendRawTransaction", [signed.raw])).lower()
    except RpcError as exc:
        if "already known" in exc.message.lower() or "already imported" in exc.message.lower():
            return signed.hash
        raise


def receipt_get(client: ChainClient, tx_hash: str) -> Receipt | None:
    raw: Any = client.call("eth_getTransactionReceipt", [tx_hash])
    if not raw or raw.get("blockNumber") is None:
        return None
    return Receipt(
        transaction_hash=str(raw["transactionHash"]).lower(),
        block_number=int(raw["blockNumber"], 16),
        succeeded=int(raw.get("status") or "0x0", 16) == 1,
        gas_used=int(raw.get("gasUsed") or "0x0", 16),
        effective_gas_price=int(raw.get("effectiveGasPrice") or "0x0", 16),
    )


def poll_backoff(fetch: Callable[[], T | None], *, timeout: float) -> T:
    """What ``fetch`` returns once it is not None: asked at once, then after 5 ms, doubling up to every 0.1 s.
    TimeoutError when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    delay = POLL_FIRST
    while True:
        found = fetch()
        if found is not None:
            return found
        if time.monotonic() + delay > deadline:
            raise TimeoutError(f"not there within {timeout:g} s")
        time.sleep(delay)
        delay = min(POLL_LONGEST, delay * 2)


def receipt_wait(client: ChainClient, tx_hash: str, *, timeout: float) -> Receipt:
    """The transaction's receipt once mined; TimeoutError when it is not within ``timeout`` seconds."""
    try:
        return poll_backoff(lambda: receipt_get(client, tx_hash), timeout=timeout)
    except TimeoutError:
        raise TimeoutError(f"transaction {tx_hash} not mined within {timeout:g} s") from None


def nonce_get(client: ChainClient, address: str, *, block: str = "pending") -> int:
    return int(client.call("eth_getTransactionCount", [address, block]), 16)


def balance_get(client: ChainClient, address: str) -> int:
    return int(client.call("eth_getBalance", [address, "latest"]), 16)


@dataclass(frozen=True)
class Simulation:
    """An eth_call's outcome: the return data, or the revert's data and the node's message."""

    reverted: bool
    data: str
    message: str = ""


def is_revert(exc: RpcError) -> bool:
    """Whether a node's error answer is a revert (code 3, or "execution reverted"), not a failure to answer."""
    return exc.code == 3 or "revert" in exc.message.lower()


def call_simulate(
    client: ChainClient, *, sender: str | None, to: str, data: str, block: int | str = "latest"
) -> Simulation:
    """``eth_call``; a revert (code 3, or "execution reverted") is an answer, not an exception."""
    request: dict[str, Any] = {"to": to, "data": data}
    if sender:
        request["from"] = sender
    tag = hex(block) if isinstance(block, int) else block
    try:
        return Simulation(reverted=False, data=str(client.call("eth_call", [request, tag])))
    except RpcError as exc:
        if is_revert(exc):
            return Simulation(reverted=True, data=exc.data or "0x", message=exc.message)
        raise


def gas_estimate(client: ChainClient, *, sender: str, to: str, data: str, block: str | None = None) -> int:
    """``eth_estimateGas``, on the node's default block or ``block`` ("pending": after what is in flight)."""
    params: list[Any] = [{"from": sender, "to": to, "data": data}]
    if block is not None:
        params.append(block)
    return int(client.call("eth_estimateGas", params), 16)
