"""Where the ingester reads from: settings first, the devnet file for whatever is unset."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.conf import settings

from devnet.state import DevnetStateError, load_state
from monitoring.ingest.sync import ContractSpec

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


class IngestConfigError(RuntimeError):
    pass


@dataclass(frozen=True)
class IngestSource:
    rpc_url: str
    contracts: list[ContractSpec]


def _address(name: str, value: str) -> str:
    if not _ADDRESS.match(value):
        raise IngestConfigError(f"{name}={value!r} is not a 0x-prefixed 20-byte address")
    return value.lower()


def ingest_source_load() -> IngestSource:
    rpc_url = settings.CHAIN_RPC_URL
    service_manager = settings.SERVICE_MANAGER_ADDRESS
    registries = list(settings.REGISTRY_ADDRESSES)
    start_raw = settings.START_BLOCK
    if not (rpc_url and service_manager and registries and start_raw is not None):
        try:
            state = load_state()
        except DevnetStateError as exc:
            raise IngestConfigError(
                "set CHAIN_RPC_URL, SERVICE_MANAGER_ADDRESS, REGISTRY_ADDRESSES and START_BLOCK, "
                f"or start the devnet ({exc})"
            ) from exc
        rpc_url = rpc_url or state["rpc_url"]
        service_manager = service_manager or state["contracts"]["service_manager"]
        registries = registries or list(state["contracts"]["registry_addresses"])
        start_raw = start_raw if start_raw is not None else str(state["start_block"])
    try:
        start_block = int(str(start_raw), 0)
    except ValueError as exc:
        raise IngestConfigError(f"START_BLOCK={start_raw!r} is not a block number") from exc
    if start_block < 0:
        raise IngestConfigError("START_BLOCK must be >= 0")
    contracts = [
        ContractSpec(
            address=_address("SERVICE_MANAGER_ADDRESS", str(service_manager)),
            kind="service_manager",
            start_block=start_block,
        )
    ]
    contracts += [
        ContractSpec(address=_address("REGISTRY_ADDRESSES", r), kind="registry", start_block=start_block)
        for r in registries
    ]
    return IngestSource(rpc_url=str(rpc_url), contracts=contracts)
