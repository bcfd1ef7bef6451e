"""A signature is durable once 202 is returned: the server killed right after the answer, the row is there."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from controlplane.serve import web_command
from devnet.anvil import free_port
from intake.models import Signature, SignatureStatus
from tests.chain_fixtures import net_deploy, signed_response

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db(transaction=True)
def test_it_keeps_an_acknowledged_signature_when_the_server_is_killed(anvil):
    net = net_deploy(anvil, operators=3)
    root = net.create_task(seed=41)
    net.ingester().sync_once()
    port = free_port()
    env = {**net.env(), "REDIS_URL": "redis://127.0.0.1:6379/15"}
    server = subprocess.Popen(
        web_command("127.0.0.1", port, workers=2),
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                requests.get(f"http://127.0.0.1:{port}/api/v1/batches/", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        body = signed_response(net, root=root, operator=1)
        response = requests.post(
            f"http://127.0.0.1:{port}/api/v1/signatures", data=json.dumps(body), timeout=10
        )
        os.kill(server.pid, signal.SIGKILL)  # right after the answer: nothing after it may be needed
        server.wait(timeout=10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert response.status_code == 202
    row = Signature.objects.get(id=response.json()["signatureId"])
    assert row.status == SignatureStatus.PENDING
    assert row.operator_id == body["operatorId"]
