"""The dashboard in a real browser (Debian's chromium, Playwright) against the devnet and the whole control plane.

One devnet of four operators (stakes 1:2:3:4) and the control plane's processes, as `make run` starts them, on a
database of their own. Operators 2-4 are stopped so the newest batch stays pending at 10% (only operator 1 signed);
the tests then act on it. Screenshots of every page at 1280 px and 390 px go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from bls import keypair_from_secret
from devnet.anvil import free_port
from devnet.stack import CONTROL_PLANE_ENV, ControlPlane

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
DATABASE = "controlplane_browser_test"
ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
STAFF = ("staff", "staff-password-for-tests")
VIEWER = ("viewer", "viewer-password-for-tests")

pytestmark = pytest.mark.slow


def wait_until(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@dataclass
class Stack:
    url: str
    database_url: str
    env: dict[str, str]
    state: dict[str, Any]

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def signed_response(self, *, index: int, batch: tuple[str, str, str]) -> dict[str, Any]:
        """A real signed response of the devnet operator ``index`` (0-based) for (root, sender, identifier)."""
        root, sender, identifier = batch
        keypair = keypair_from_secret(int(self.state["operators"][index]["bls_secret"], 16))
        return {
            "batchMerkleRoot": root,
            "senderAddress": sender,
            "batchIdentifierHash": identifier,
            "blsSignature": keypair.sign(bytes.fromhex(identifier[2:])).to_hex(),
            "operatorId": "0x" + keypair.operator_id.hex(),
        }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("browser")
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DATABASE}")
    database_url = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
    url = f"http://127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        **CONTROL_PLANE_ENV,
        "DATABASE_URL": database_url,
        "REDIS_URL": "redis://127.0.0.1:6379/10",
        "DEVNET_DIR": str(directory),
        "DEVNET_FILE": str(directory / "devnet.json"),
        "SECRET_KEY": "browser-test-only",
        "PUBLIC_DASHBOARD": "0",
        "HTTPS_ONLY": "0",  # plain http to 127.0.0.1: a browser sends no secure cookie over it
        "PYTHONUNBUFFERED": "1",
    }
    for key in ("CHAIN_RPC_URL", "SERVICE_MANAGER_ADDRESS", "REGISTRY_ADDRESSES", "START_BLOCK"):
        env.pop(key, None)
    rpc = f"127.0.0.1:{free_port()}"  # the operators send over gob to the control plane's aggregator_rpc
    control_plane = ControlPlane(url=url, logs=directory, env=env, rpc_address=rpc)
    stack = Stack(url=url, database_url=database_url, env=env, state={})
    try:
        stack.manage(
            "devnet",
            "up",
            "--operators",
            "4",
            "--batch-interval",
            "3",
            "--control-plane-url",
            url,
            "--control-plane-rpc",
            rpc,
        )
        stack.state = json.loads((directory / "devnet.json").read_text())
        stack.manage("migrate", "--noinput", "-v", "0")
        stack.manage(
            "shell",
            "-c",
            "from django.contrib.auth.models import User;"
            f"User.objects.create_user({STAFF[0]!r}, password={STAFF[1]!r}, is_staff=True);"
            f"User.objects.create_user({VIEWER[0]!r}, password={VIEWER[1]!r})",
        )
        for name in control_plane.commands:
            control_plane.start_one(name)
        control_plane.watch()
        wait_until("the control plane's web server", lambda: _answers(url + "/healthz"))
        yield stack
    finally:
        control_plane.stop()
        subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "devnet", "down"],
            env=env,
            cwd=ROOT,
            capture_output=True,
        )
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def pending_batch(stack: Stack) -> Iterator[tuple[str, str, str]]:
    """The newest batch, created while operators 2-4 were stopped: pending, with only operator 1's signature."""
    for index in (2, 3, 4):
        stack.manage("devnet", "stop", f"operator-{index}")
    stopped_at = stack.query("SELECT coalesce(max(block_number), 0) FROM monitoring_ingestcursor")[0][0]
    operator_1 = (
        "0x" + keypair_from_secret(int(stack.state["operators"][0]["bls_secret"], 16)).operator_id.hex()
    )

    def signed_by_operator_1_only() -> tuple[str, str, str] | None:
        rows = stack.query(
            "SELECT b.merkle_root, b.sender, b.identifier FROM monitoring_batch b"
            " WHERE b.created_block > %s AND b.status = 'pending' AND EXISTS (SELECT 1 FROM monitoring_signature s"
            "  WHERE s.batch_identifier = b.identifier AND s.operator_id = %s AND s.status = 'verified')"
            " ORDER BY b.created_block DESC LIMIT 1",
            stopped_at,
            operator_1,
        )
        return rows[0] if rows else None

    batch = wait_until("a batch signed by operator 1 alone", signed_by_operator_1_only, timeout=90)
    yield batch
    for index in (2, 3, 4):
        stack.manage("devnet", "start", f"operator-{index}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does this)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


def log_in(browser: Any, stack: Stack, user: tuple[str, str], *, width: int = 1280) -> Any:
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(stack.url + "/login/")
    page.fill("#id_username", user[0])
    page.fill("#id_password", user[1])
    page.click("button[type=submit]")
    page.wait_for_url(stack.url + "/")
    return page


def wait_live(page: Any) -> None:
    page.wait_for_selector('[data-testid="live-indicator"][data-state="live"]', timeout=15000)


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def bar_percent(page: Any) -> float:
    bar = page.locator('[data-testid="quorum-progress"]')
    return float(bar.get_attribute("data-signed-percent")) + float(bar.get_attribute("data-pending-percent"))


def test_it_moves_the_progress_bar_when_a_signature_is_accepted(stack, pending_batch, browser):
    page = log_in(browser, stack, STAFF)
    page.goto(f"{stack.url}/batches/{pending_batch[2]}/")
    wait_live(page)
    before = bar_percent(page)
    assert before == pytest.approx(10.0, abs=0.05)  # operator 1 holds 1 of 10 units
    page.evaluate("window.__notReloaded = true")

    # Operator 2 (2 of 10 units) signs; the intake answers 202 after the commit.
    body = stack.signed_response(index=1, batch=pending_batch)
    answer = requests.post(stack.url + "/api/v1/signatures", json=body, timeout=10)
    assert answer.status_code == 202, answer.text

    page.wait_for_function(
        "() => { const b = document.querySelector('[data-testid=\"quorum-progress\"]');"
        " return Number(b.dataset.signedPercent) + Number(b.dataset.pendingPercent) > 29.9; }",
        timeout=15000,
    )
    assert page.evaluate("window.__notReloaded") is True
    assert bar_percent(page) == pytest.approx(30.0, abs=0.05)
    signer = page.locator(f'[data-testid="signer-row"][data-operator-id="{body["operatorId"]}"]')
    signer.wait_for(timeout=10000)
    shot(page, "batch-detail-1280")
    page.close()


def test_it_lets_staff_dry_run_a_replay_and_see_the_result(stack, pending_batch, browser):
    page = log_in(browser, stack, STAFF)
    page.goto(f"{stack.url}/batches/{pending_batch[2]}/")
    runs_before = stack.query("SELECT count(*) FROM recovery_recoveryrun")[0][0]
    # The batch page has two action boxes (replay, standby response): this is the replay's.
    actions = page.locator('[data-testid="replay-actions"]')
    actions.locator('[data-testid="recovery-dry-run"]').click()
    result = actions.locator('[data-testid="recovery-result"]')
    actions.locator('[data-testid="recovery-result"][data-state="ok"]').wait_for(timeout=15000)
    assert "dry run" in result.inner_text().lower()
    runs = stack.query("SELECT dry_run, requested_by, scope FROM recovery_recoveryrun ORDER BY id")
    assert len(runs) == runs_before + 1
    assert runs[-1] == (True, STAFF[0], pending_batch[2])
    shot(page, "batch-dry-run-1280")
    page.close()


def test_it_shows_no_recovery_actions_to_a_user_who_is_not_staff(stack, pending_batch, browser):
    page = log_in(browser, stack, VIEWER)
    page.goto(f"{stack.url}/batches/{pending_batch[2]}/")
    wait_live(page)
    assert page.locator('[data-testid="recovery-dry-run"]').count() == 0
    # Even a hand-made request from the page, with the session and the CSRF token, is refused.
    status = page.evaluate(
        """async (batch) => {
            const token = (document.cookie.match(/csrftoken=([^;]+)/) || [])[1] || "";
            const answer = await fetch("/api/v1/recovery/replays", {method: "POST",
                headers: {"Content-Type": "application/json", "X-CSRFToken": token},
                body: JSON.stringify({batch: batch, dry_run: true})});
            return answer.status;
        }""",
        pending_batch[2],
    )
    assert status == 403
    page.close()


def test_it_turns_a_killed_operator_down_on_the_operators_page(stack, pending_batch, browser):
    page = log_in(browser, stack, VIEWER)
    page.goto(stack.url + "/operators/")
    wait_live(page)
    operator_1 = (
        "0x" + keypair_from_secret(int(stack.state["operators"][0]["bls_secret"], 16)).operator_id.hex()
    )
    row = f'[data-testid="operator-row"][data-operator-id="{operator_1}"]'
    page.wait_for_selector(f'{row}[data-state="up"]', timeout=20000)
    page.evaluate("window.__notReloaded = true")
    stack.manage("devnet", "kill", "operator-1")
    try:
        page.wait_for_selector(f'{row}[data-state="down"]', timeout=30000)
        assert page.evaluate("window.__notReloaded") is True
        shot(page, "operators-1280")
    finally:
        stack.manage("devnet", "start", "operator-1")
    page.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_it_renders_every_page_without_horizontal_overflow(stack, pending_batch, browser, width):
    page = log_in(browser, stack, STAFF, width=width)
    operator_1 = (
        "0x" + keypair_from_secret(int(stack.state["operators"][0]["bls_secret"], 16)).operator_id.hex()
    )
    pages = {
        "overview": "/",
        "batches": "/batches/",
        "batch-detail": f"/batches/{pending_batch[2]}/",
        "operators": "/operators/",
        "operator-detail": f"/operators/{operator_1}/",
        "recovery": "/recovery/",
    }
    for name, path in pages.items():
        page.goto(stack.url + path)
        wait_live(page)
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 1, f"{name} overflows by {overflow} px at {width} px"
        shot(page, f"{name}-{width}")
    page.close()
