"""The network being controlled: chain, contracts, aggregator endpoint and operators' control tokens.

Resolved once, when settings load: each value from its environment variable, else from the network file
(``DEVNET_FILE``, which the devnet that ``make run`` starts writes; a real deployment sets the variables and
has no file). Everything is validated here, so a configuration that can't work stops start-up with a message
naming the setting, instead of failing quietly later. Values that are simply absent stay ``None``: only the
processes that need them (ingest, recovery) refuse to run without them, with their own message.

This module reads the file as data; it never imports the devnet.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from controlplane.env import ImproperlyConfiguredEnv, env_list, env_optional_str

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_OPERATOR_ID = re.compile(r"^0x[0-9a-fA-F]{64}$")


class NetworkConfigError(ImproperlyConfiguredEnv):
    """A network setting that can't work; the message names it."""


@dataclass(frozen=True)
class Network:
    chain_rpc_url: str | None = None
    service_manager_address: str | None = None
    registry_addresses: tuple[str, ...] = ()
    # EigenLayer's OperatorStateRetriever: the standby responder asks it for checkSignatures' indices.
    operator_state_retriever_address: str | None = None
    start_block: int | None = None
    aggregator_url: str | None = None
    # "gob": Go net/rpc, as Aligned's aggregator (aggregator_url is then its HOST:PORT); "http": our devnet's JSON.
    aggregator_protocol: str = "gob"
    operator_control_tokens: dict[str, str] = field(default_factory=dict)
    # Why the network file gave nothing (absent, unreadable, malformed): part of "not configured" messages.
    file_note: str = ""


def _url(name: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NetworkConfigError(f"{name}={value!r} is not an http(s) URL")
    return value.rstrip("/")


def _rpc_address(name: str, value: str) -> str:
    """A net/rpc peer as HOST:PORT; ``tcp://`` or ``http://`` in front (as some configs write it) is dropped."""
    text = value.strip()
    parts = urlsplit(text if "://" in text else f"tcp://{text}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None or parts.path.strip("/"):
        raise NetworkConfigError(f"{name}={value!r} is not HOST:PORT (the aggregator's net/rpc address)")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port}"


def _address(name: str, value: str) -> str:
    if not _ADDRESS.match(value.strip()):
        raise NetworkConfigError(f"{name}: {value!r} is not a 0x-prefixed 20-byte address")
    return value.strip().lower()


def _start_block(value: str | int) -> int:
    try:
        number = value if isinstance(value, int) else int(str(value).strip(), 0)
    except ValueError:
        raise NetworkConfigError(f"START_BLOCK={value!r} is not a block number") from None
    if number < 0:
        raise NetworkConfigError(f"START_BLOCK={number} must be >= 0")
    return number


def control_tokens_parse(
    raw: str | Mapping[str, Any] | None, *, name: str = "OPERATOR_CONTROL_TOKENS"
) -> dict[str, str]:
    """``{"0xoperatorId": "token"}`` as JSON text (or already parsed), keys lowercased; {} when unset."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            value: Any = json.loads(raw)
        except ValueError as exc:
            raise NetworkConfigError(
                f'{name} must be a JSON object {{"0xoperatorId": "token"}}: not JSON ({exc.args[0]})'
            ) from None
    else:
        value = raw
    if not isinstance(value, Mapping) or not all(
        isinstance(key, str) and isinstance(token, str) and token for key, token in value.items()
    ):
        raise NetworkConfigError(
            f'{name} must be a JSON object {{"0xoperatorId": "token"}} of non-empty strings'
        )
    tokens = {key.strip().lower(): token for key, token in value.items()}
    for key in tokens:
        if not _OPERATOR_ID.match(key):
            raise NetworkConfigError(f"{name}: {key!r} is not a 0x-prefixed 32-byte operator id")
    return tokens


def _network_file(path: Path) -> tuple[dict[str, Any], str]:
    """The file's values in the variables' terms, and a note when it gave none."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}, f"no network file at {path}"
    except (OSError, ValueError) as exc:
        return {}, f"network file {path} unreadable: {exc}"
    if not isinstance(data, dict):
        return {}, f"network file {path} is not a JSON object"
    contracts: dict[str, Any] = data["contracts"] if isinstance(data.get("contracts"), dict) else {}
    aggregator: dict[str, Any] = data["aggregator"] if isinstance(data.get("aggregator"), dict) else {}
    operators: list[Any] = data["operators"] if isinstance(data.get("operators"), list) else []
    values: dict[str, Any] = {
        "CHAIN_RPC_URL": data.get("rpc_url"),
        "SERVICE_MANAGER_ADDRESS": contracts.get("service_manager"),
        "REGISTRY_ADDRESSES": contracts.get("registry_addresses"),
        "OPERATOR_STATE_RETRIEVER_ADDRESS": contracts.get("operator_state_retriever"),
        "START_BLOCK": data.get("start_block"),
        "AGGREGATOR_URL": aggregator.get("url"),
        "AGGREGATOR_PROTOCOL": aggregator.get("protocol"),
        "OPERATOR_CONTROL_TOKENS": {
            str(o["operator_id"]): str(o["control_token"])
            for o in operators
            if isinstance(o, dict) and o.get("operator_id") and o.get("control_token")
        },
    }
    return {k: v for k, v in values.items() if v not in (None, "", [], {})}, ""


def network_resolve(
    *,
    network_file: Path | None,
    chain_rpc_url: str | None = None,
    service_manager_address: str | None = None,
    registry_addresses: list[str] | None = None,
    operator_state_retriever_address: str | None = None,
    start_block: str | None = None,
    aggregator_url: str | None = None,
    aggregator_protocol: str | None = None,
    operator_control_tokens: str | None = None,
) -> Network:
    """Each value from its variable (None: unset), else from the network file; validated as a whole."""
    given: dict[str, Any] = {
        "CHAIN_RPC_URL": chain_rpc_url,
        "SERVICE_MANAGER_ADDRESS": service_manager_address,
        "REGISTRY_ADDRESSES": registry_addresses or None,
        "OPERATOR_STATE_RETRIEVER_ADDRESS": operator_state_retriever_address,
        "START_BLOCK": start_block,
        "AGGREGATOR_URL": aggregator_url,
        "AGGREGATOR_PROTOCOL": aggregator_protocol,
        "OPERATOR_CONTROL_TOKENS": operator_control_tokens,
    }
    note = ""
    filled: set[str] = set()
    file_tokens: dict[str, str] = {}
    if network_file is not None and any(value in (None, "") for value in given.values()):
        from_file, note = _network_file(network_file)
        for name, value in from_file.items():
            if name == "OPERATOR_CONTROL_TOKENS":
                file_tokens = control_tokens_parse(value, name=f"the operators' tokens in {network_file}")
            elif given[name] in (None, ""):
                given[name] = value
                filled.add(name)

    def checked(name: str, check: Any) -> Any:
        value = given[name]
        if value in (None, ""):
            return None
        try:
            return check(value)
        except NetworkConfigError as exc:
            where = f" (read from {network_file})" if name in filled else ""
            raise NetworkConfigError(f"{exc}{where}") from None

    service_manager = checked(
        "SERVICE_MANAGER_ADDRESS", lambda v: _address("SERVICE_MANAGER_ADDRESS", str(v))
    )
    registries = (
        checked(
            "REGISTRY_ADDRESSES",
            lambda v: tuple(
                _address("REGISTRY_ADDRESSES", str(a)) for a in (v if isinstance(v, list) else [v])
            ),
        )
        or ()
    )
    # Each contract has its own ingest cursor, keyed by address: one address given twice would share a cursor,
    # and one of the two kinds of events would silently never be ingested.
    if len(set(registries)) != len(registries):
        raise NetworkConfigError(f"REGISTRY_ADDRESSES names an address twice: {', '.join(registries)}")
    if service_manager is not None and service_manager in registries:
        raise NetworkConfigError(
            f"REGISTRY_ADDRESSES holds SERVICE_MANAGER_ADDRESS ({service_manager}): they must be different "
            "contracts (the service manager emits NewBatchV3 and BatchVerified, the registries the operators' "
            "registrations)"
        )
    # A real aggregator speaks net/rpc (gob); an endpoint the devnet's file names is the devnet's HTTP one.
    protocol = str(given["AGGREGATOR_PROTOCOL"] or ("http" if "AGGREGATOR_URL" in filled else "gob")).lower()
    if protocol not in ("gob", "http"):
        raise NetworkConfigError(f"AGGREGATOR_PROTOCOL={protocol!r} must be gob or http")
    aggregator = (
        (lambda v: _url("AGGREGATOR_URL", str(v)))
        if protocol == "http"
        else (lambda v: _rpc_address("AGGREGATOR_URL", str(v)))
    )
    return Network(
        chain_rpc_url=checked("CHAIN_RPC_URL", lambda v: _url("CHAIN_RPC_URL", str(v))),
        service_manager_address=service_manager,
        registry_addresses=registries,
        operator_state_retriever_address=checked(
            "OPERATOR_STATE_RETRIEVER_ADDRESS", lambda v: _address("OPERATOR_STATE_RETRIEVER_ADDRESS", str(v))
        ),
        start_block=checked("START_BLOCK", _start_block),
        aggregator_url=checked("AGGREGATOR_URL", aggregator),
        aggregator_protocol=protocol,
        # The variable's tokens win over the file's, operator by operator.
        operator_control_tokens={**file_tokens, **control_tokens_parse(operator_control_tokens)},
        file_note=note,
    )


def network_from_env(*, network_file: Path | None) -> Network:
    """The network from its environment variables (each also as ``NAME_FILE``), then from ``network_file``."""
    return network_resolve(
        chain_rpc_url=env_optional_str("CHAIN_RPC_URL"),
        service_manager_address=env_optional_str("SERVICE_MANAGER_ADDRESS"),
        registry_addresses=env_list("REGISTRY_ADDRESSES"),
        operator_state_retriever_address=env_optional_str("OPERATOR_STATE_RETRIEVER_ADDRESS"),
        start_block=env_optional_str("START_BLOCK"),
        aggregator_url=env_optional_str("AGGREGATOR_URL"),
        aggregator_protocol=env_optional_str("AGGREGATOR_PROTOCOL"),
        operator_control_tokens=env_optional_str("OPERATOR_CONTROL_TOKENS"),
        network_file=network_file,
    )
