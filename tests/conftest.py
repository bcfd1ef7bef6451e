from __future__ import annotations

from collections.abc import Iterator

import pytest

from devnet.anvil import Anvil, start_anvil


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
