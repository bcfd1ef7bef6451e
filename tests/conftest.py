from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devnet.anvil import Anvil, start_anvil
from tests.golang import go_build


@pytest.fixture
def anvil() -> Iterator[Anvil]:
    """A fresh real anvil node on a free port, stopped by its PID afterwards."""
    node = start_anvil()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def module_anvil() -> Iterator[Anvil]:
    node = start_anvil()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def go_programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tests' Go programs (tests/go), built once: an operator, an aggregator and gob's own codec."""
    out = tmp_path_factory.mktemp("go")
    return {name: go_build(name, out) for name in ("operator", "aggregator", "gobcheck")}
