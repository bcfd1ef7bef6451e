"""Where the ingester reads from: the network settings, resolved and validated once in settings."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from ledger.ingest.sync import ContractSpec


class IngestConfigError(RuntimeError):
    pass


@dataclass(frozen=True)
class IngestSource:
    rpc_url: str
    contracts: list[ContractSpec]


def ingest_source_load() -> IngestSource:
    rpc_url = settings.CHAIN_RPC_URL
    service_manager = settings.SERVICE_MANAGER_ADDRESS
    registries = list(settings.REGISTRY_ADDRESSES)
    start_block = settings.START_BLOCK
    missing = [
        name
        for name, value in (
            ("CHAIN_RPC_URL", rpc_url),
            ("SERVICE_MANAGER_ADDRESS", service_manager),
            ("REGISTRY_ADDRESSES", registries),
            ("START_BLOCK", start_block),
        )
        if value in (None, "", [])
    ]
    if missing:
        raise IngestConfigError(
            f"set {', '.join(missing)}, or start the devnet "
            f"({settings.NETWORK.file_note or 'the network file lacks them'})"
        )
    assert rpc_url
    assert service_manager
    assert start_block is not None
    contracts = [ContractSpec(address=service_manager, kind="service_manager", start_block=int(start_block))]
    contracts += [ContractSpec(address=r, kind="registry", start_block=int(start_block)) for r in registries]
    return IngestSource(rpc_url=str(rpc_url), contracts=contracts)
