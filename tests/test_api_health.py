"""/healthz: what a load balancer or a readiness probe asks, without credentials."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from django.conf import settings
from django.test import Client

# Asks /healthz in a fresh process whose DATABASE_URL points at a port where no Postgres listens.
PROBE = """
import django, json
django.setup()
from django.test import Client
response = Client(SERVER_NAME="localhost").get("/healthz")
print(json.dumps({"status": response.status_code, "body": response.json()}))
"""


@pytest.mark.django_db
def test_it_answers_200_when_postgres_answers() -> None:
    response = Client().get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert Client().head("/healthz").status_code == 200
    assert Client().post("/healthz").status_code == 405


def test_it_answers_503_when_postgres_does_not() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{port}/nowhere",
        "DB_POOL_TIMEOUT": "0.5",
        "DB_POOL_MIN_SIZE": "0",
    }

    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=settings.BASE_DIR,
    )

    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer == {"status": 503, "body": {"status": "unavailable", "error": "database unavailable"}}
