"""The network (chain, contracts, aggregator, control tokens) is resolved and checked once, as settings load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from controlplane.network import NetworkConfigError, network_resolve

SM = "0x" + "11" * 20
REG = "0x" + "22" * 20
OP = "0x" + "ab" * 32
ROOT = Path(settings.BASE_DIR)


def devnet_file(tmp_path: Path, **overrides: Any) -> Path:
    state: dict[str, Any] = {
        "version": 1,
        "rpc_url": "http://127.0.0.1:8545",
        "start_block": 7,
        "contracts": {"service_manager": SM.upper().replace("0X", "0x"), "registry_addresses": [REG]},
        "aggregator": {"url": "http://127.0.0.1:8090/"},
        "operators": [{"operator_id": OP, "control_token": "from-file"}],
    }
    state.update(overrides)
    path = tmp_path / "devnet.json"
    path.write_text(json.dumps(state))
    return path


def test_it_reads_each_unset_value_from_the_network_file(tmp_path: Path) -> None:
    network = network_resolve(network_file=devnet_file(tmp_path))
    assert network.chain_rpc_url == "http://127.0.0.1:8545"
    assert network.service_manager_address == SM  # lowercased
    assert network.registry_addresses == (REG,)
    assert network.start_block == 7
    assert network.aggregator_url == "http://127.0.0.1:8090"
    assert network.aggregator_protocol == "http"  # the devnet's own aggregator
    assert network.operator_control_tokens == {OP: "from-file"}
    assert network.file_note == ""


def test_it_speaks_gob_to_an_aggregator_the_environment_names(tmp_path: Path) -> None:
    plain = network_resolve(aggregator_url="10.0.0.5:8090", network_file=devnet_file(tmp_path))
    assert (plain.aggregator_protocol, plain.aggregator_url) == ("gob", "10.0.0.5:8090")
    schemed = network_resolve(aggregator_url="tcp://aggregator.example:8090", network_file=None)
    assert schemed.aggregator_url == "aggregator.example:8090"
    http = network_resolve(
        aggregator_url="http://a.example:1/", aggregator_protocol="HTTP", network_file=None
    )
    assert (http.aggregator_protocol, http.aggregator_url) == ("http", "http://a.example:1")
    with pytest.raises(NetworkConfigError, match=r"AGGREGATOR_URL='aggregator\.example' is not HOST:PORT"):
        network_resolve(aggregator_url="aggregator.example", network_file=None)


def test_it_prefers_the_environment_over_the_file(tmp_path: Path) -> None:
    other = "0x" + "33" * 20
    network = network_resolve(
        chain_rpc_url="https://rpc.example.org",
        registry_addresses=[other],
        start_block="0x10",
        operator_control_tokens=json.dumps({OP: "from-env"}),
        network_file=devnet_file(tmp_path),
    )
    assert network.chain_rpc_url == "https://rpc.example.org"
    assert network.registry_addresses == (other,)
    assert network.start_block == 16
    assert network.service_manager_address == SM  # unset: the file's
    assert network.operator_control_tokens == {OP: "from-env"}


def test_it_leaves_absent_values_unset_and_says_why(tmp_path: Path) -> None:
    network = network_resolve(network_file=tmp_path / "missing.json")
    assert network.chain_rpc_url is None
    assert network.operator_control_tokens == {}
    assert "no network file at" in network.file_note
    (tmp_path / "bad.json").write_text("{not json")
    assert "unreadable" in network_resolve(network_file=tmp_path / "bad.json").file_note
    assert network_resolve(network_file=None).file_note == ""


def test_it_refuses_a_registry_at_the_service_manager_address(tmp_path: Path) -> None:
    # They would share one ingest cursor, and the registry's events would never be ingested.
    with pytest.raises(NetworkConfigError, match="REGISTRY_ADDRESSES holds SERVICE_MANAGER_ADDRESS"):
        network_resolve(
            service_manager_address=SM, registry_addresses=[SM.upper().replace("0X", "0x")], network_file=None
        )
    with pytest.raises(NetworkConfigError, match="REGISTRY_ADDRESSES names an address twice"):
        network_resolve(registry_addresses=[REG, REG], network_file=None)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "service_manager_address",
            "0x1234",
            "SERVICE_MANAGER_ADDRESS: '0x1234' is not a 0x-prefixed 20-byte",
        ),
        ("registry_addresses", ["nope"], "REGISTRY_ADDRESSES: 'nope' is not"),
        ("start_block", "latest", "START_BLOCK='latest' is not a block number"),
        ("start_block", "-1", "START_BLOCK=-1 must be >= 0"),
        ("chain_rpc_url", "127.0.0.1:8545", "CHAIN_RPC_URL='127.0.0.1:8545' is not an http"),
        ("aggregator_url", "ftp://x", "AGGREGATOR_URL='ftp://x' is not HOST:PORT"),
        ("aggregator_protocol", "grpc", "AGGREGATOR_PROTOCOL='grpc' must be gob or http"),
        ("operator_control_tokens", "[1]", "OPERATOR_CONTROL_TOKENS must be a JSON object"),
        ("operator_control_tokens", '{"0x12": "t"}', "'0x12' is not a 0x-prefixed 32-byte operator id"),
    ],
)
def test_it_refuses_a_malformed_value_naming_the_setting(name: str, value: Any, message: str) -> None:
    with pytest.raises(NetworkConfigError, match=message.replace("(", r"\(").replace("+", r"\+")):
        network_resolve(**{name: value}, network_file=None)


def test_it_names_the_file_when_a_bad_value_came_from_it(tmp_path: Path) -> None:
    path = devnet_file(tmp_path, start_block="soon")
    with pytest.raises(
        NetworkConfigError, match=f"START_BLOCK='soon' is not a block number \\(read from {path}\\)"
    ):
        network_resolve(network_file=path)


def test_it_stops_start_up_with_a_configuration_that_cannot_work(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SECRET_KEY": "test",
        "DEVNET_FILE": str(tmp_path / "none.json"),
        "SERVICE_MANAGER_ADDRESS": SM,
        "REGISTRY_ADDRESSES": f"{REG},{SM}",
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={k: v for k, v in env.items() if k != "DJANGO_SETTINGS_MODULE"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "REGISTRY_ADDRESSES holds SERVICE_MANAGER_ADDRESS" in done.stderr
