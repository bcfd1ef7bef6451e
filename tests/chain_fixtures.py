"""A real network on a real anvil node for ingest tests: contracts, registered operators, tasks."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from bls import keypair_from_secret
from chain import ChainClient
from devnet import contracts
from devnet.anvil import Anvil
from devnet.batches import make_batch
from devnet.network import DevnetConfig, network_deploy
from devnet.nonsigners import respond_with_signatures
from ledger.ingest.sync import ContractSpec, IngestConfig, Ingester


@dataclass
class Net:
    anvil: Anvil
    w3: Web3
    state: dict[str, Any]

    def account(self, role: str) -> LocalAccount:
        account: LocalAccount = Account.from_key(self.state["accounts"][role]["private_key"])
        return account

    @property
    def service_manager(self) -> str:
        return str(self.state["contracts"]["service_manager"])

    @property
    def registry(self) -> str:
        return str(self.state["contracts"]["registry"])

    def specs(self) -> list[ContractSpec]:
        start = int(self.state["start_block"])
        return [
            ContractSpec(address=self.service_manager, kind="service_manager", start_block=start),
            ContractSpec(address=self.registry, kind="registry", start_block=start),
        ]

    def ingester(self, *, confirmations: int = 0, url: str | None = None, **config: Any) -> Ingester:
        client = ChainClient(url or self.anvil.url, backoff_base=0.01, backoff_cap=0.05)
        return Ingester(
            client=client,
            config=IngestConfig(
                chain_id=31337, contracts=self.specs(), confirmations=confirmations, **config
            ),
        )

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a `manage.py ingest` subprocess against this network and the test database."""
        db = settings.DATABASES["default"]
        return {
            **os.environ,
            "SECRET_KEY": "test",
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "CHAIN_RPC_URL": self.anvil.url,
            "SERVICE_MANAGER_ADDRESS": self.service_manager,
            "REGISTRY_ADDRESSES": self.registry,
            "START_BLOCK": str(self.state["start_block"]),
            "INGEST_CONFIRMATIONS": "0",
            "INGEST_POLL_INTERVAL": "0.1",
            **extra,
        }

    def create_task(self, *, seed: int) -> bytes:
        batch = make_batch(rng=random.Random(seed), proofs=1)
        contracts.create_task(
            self.w3,
            service_manager=self.service_manager,
            batcher=self.account("batcher"),
            batch_merkle_root=batch.merkle_root,
            data_pointer=f"http://127.0.0.1:1/batches/{seed}.json",
            fee_limit=10**15,
        )
        return batch.merkle_root

    def respond(self, *, root: bytes, signers: list[int]) -> dict[str, Any]:
        """Answer a task on chain with real BLS signatures of the given operators."""
        sender = self.account("batcher").address.lower()
        message = contracts.batch_identifier(batch_merkle_root=root, sender=sender)
        keypairs = [keypair_from_secret(int(self.state["operators"][i]["bls_secret"], 16)) for i in signers]
        receipt = respond_with_signatures(
            self.w3,
            service_manager=self.service_manager,
            registry=self.registry,
            retriever=str(self.state["contracts"]["operator_state_retriever"]),
            aggregator=self.account("aggregator"),
            batch_merkle_root=root,
            sender=sender,
            signatures={kp.operator_id: kp.sign(message) for kp in keypairs},
            signer_keys_g2={kp.operator_id: kp.public_key_g2 for kp in keypairs},
        )
        return dict(receipt)


def signed_response(net: Net, *, root: bytes, operator: int, wrong_key: bool = False) -> dict[str, Any]:
    """Aligned's signed task response JSON from one devnet operator (or signed by a wrong key)."""
    sender = net.account("batcher").address.lower()
    identifier = contracts.batch_identifier(batch_merkle_root=root, sender=sender)
    keypair = keypair_from_secret(int(net.state["operators"][operator]["bls_secret"], 16))
    signer = keypair_from_secret(keypair.secret + 1) if wrong_key else keypair
    return {
        "batchMerkleRoot": "0x" + root.hex(),
        "senderAddress": sender,
        "batchIdentifierHash": "0x" + identifier.hex(),
        "blsSignature": signer.sign(identifier).to_hex(),
        "operatorId": "0x" + keypair.operator_id.hex(),
    }


def replacement_task(net: Net, *, seed: int) -> tuple[str, bytes]:
    """A signed createNewTask for another root, reusing the batcher's last nonce (so it replaces the orphan)."""
    account = net.account("batcher")
    root = make_batch(rng=random.Random(seed), proofs=1).merkle_root
    service_manager = contracts.service_manager_contract(net.w3, net.service_manager)
    params: Any = {
        "from": account.address,
        "nonce": net.w3.eth.get_transaction_count(account.address) - 1,
        "gas": 300_000,
        "maxFeePerGas": 10**11,
        "maxPriorityFeePerGas": 10**9,
        "chainId": 31337,
    }
    tx: Any = service_manager.functions.createNewTask(
        root, "http://127.0.0.1:1/other.json", 1
    ).build_transaction(params)
    return "0x" + bytes(account.sign_transaction(tx).raw_transaction).hex(), root


def net_deploy(anvil: Anvil, *, operators: int = 3, seed: str = "ingest") -> Net:
    state: dict[str, Any] = {"version": 1, "components": {}}
    network_deploy(
        state=state,
        config=DevnetConfig(operators=operators, seed=seed),
        rpc_url=anvil.url,
        ws_url=anvil.ws_url,
    )
    return Net(anvil=anvil, w3=Web3(Web3.HTTPProvider(anvil.url)), state=state)


def net_with_task(anvil: Anvil, *, seed: int) -> tuple[Net, bytes]:
    """Four operators (stakes 10, 20, 30, 40) and one task created with ``seed``, ingested into the ledger."""
    net = net_deploy(anvil, operators=4)
    root = net.create_task(seed=seed)
    net.ingester().sync_once()
    return net, root
