"""The committed contract artifacts match what the pinned solc builds from the committed sources."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from devnet import contracts as c

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS_DIR = ROOT / "devnet" / "contracts"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


def run_check(script: Path, *, env_node_path: bool = False) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(Path(str(NODE)).parent)}
    if env_node_path:
        env["NODE_PATH"] = str(ROOT / "node_modules")
    return subprocess.run(
        [str(NODE), str(script), "--check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_it_has_up_to_date_artifacts() -> None:
    result = run_check(CONTRACTS_DIR / "compile.mjs")
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout


def test_it_builds_artifacts_with_the_pinned_compiler_settings() -> None:
    for name in c.CONTRACT_NAMES:
        path = c.ARTIFACTS_DIR / f"{name}.json"
        text = path.read_text()
        artifact = json.loads(text)
        assert list(artifact) == ["contractName", "abi", "bytecode", "compiler"]
        assert artifact["contractName"] == name
        assert artifact["bytecode"].startswith("0x")
        assert len(artifact["bytecode"]) > 1000
        assert artifact["compiler"]["version"].startswith("0.8.37+")
        assert artifact["compiler"]["evmVersion"] == "cancun"
        assert artifact["compiler"]["optimizer"] == {"enabled": True, "runs": 200}
        assert text.endswith("}\n")
        assert c.load_artifact(name) == artifact


def test_it_names_a_stale_or_missing_artifact(tmp_path: Path) -> None:
    copy = tmp_path / "contracts"
    shutil.copytree(CONTRACTS_DIR, copy)
    script = copy / "compile.mjs"

    registry_source = copy / "OperatorRegistry.sol"
    registry_source.write_text(registry_source.read_text() + "\n// changed\n")
    result = run_check(script, env_node_path=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "stale artifact" in result.stderr
    assert "OperatorRegistry.json" in result.stderr
    assert "AlignedServiceManager.json" not in result.stderr

    (copy / "build" / "AlignedServiceManager.json").unlink()
    result = run_check(script, env_node_path=True)
    assert result.returncode == 1
    assert "missing artifact" in result.stderr
    assert "AlignedServiceManager.json" in result.stderr
