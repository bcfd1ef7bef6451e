"""The OpenAPI schema (drf-spectacular) and the API conforming to it: schemathesis against the WSGI app."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck
from schemathesis import GenerationMode

from alerts.models import Alert, AlertKind, AlertSeverity, AlertState
from controlplane.auth import api_token_create
from controlplane.models import TokenScope
from controlplane.wsgi import application
from liveness.models import OperatorLiveness
from progress.models import BatchProgress
from recovery.models import RecoveryKind
from recovery.services.runs import recovery_run_start
from tests.factories import ETH, batch_create, operator_create

# Per operation and generation mode (positive, negative): bounded so the whole run stays well under a minute.
MAX_EXAMPLES = 20
CONFIG = schemathesis.Config.from_dict(
    {
        "operations": [
            {
                # A well-formed identifier of a batch or operator that does not exist, or neither `batch` nor
                # `all_pending`, is a 400 naming the field (the schema cannot say which identifiers exist).
                "include-path-regex": "^/api/v1/recovery/(replays|catchups)$",
                "include-method": "POST",
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "400", "401", "403", "404", "409", "429"]
                    }
                },
            }
        ]
    }
)


def test_it_generates_a_valid_schema_without_warnings(tmp_path: Path) -> None:
    target = tmp_path / "schema.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))

    text = target.read_text()
    assert text.startswith("openapi: 3.")
    for path in (
        "/api/v1/alerts/:",
        "/api/v1/alerts/{alert_id}/acknowledge:",
        "/api/v1/batches/:",
        "/api/v1/operators/{operator_id}/:",
        "/api/v1/recovery/replays:",
        "/api/v1/recovery/runs/{run_id}:",
    ):
        assert f"  {path}\n" in text
    assert "/api/v1/recovery/replays/:" not in text, "slash-tolerant aliases appear once"


@pytest.mark.django_db
def test_it_serves_the_schema_and_a_docs_page_without_a_cdn() -> None:
    schema = Client().get("/api/schema/?format=json")
    docs = Client().get("/api/docs/")

    assert schema.status_code == 200
    assert schema.json()["components"]["securitySchemes"]["tokenAuth"]["scheme"] == "bearer"
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn." not in html
    assert "unpkg" not in html
    bundle = Client().get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert bundle.status_code == 200, "served by this process (whitenoise), not a CDN"


def _seed() -> dict[str, Any]:
    """Something behind every list, so responses carry real objects to check against the schema."""
    now = timezone.now()
    operators = [operator_create(label=f"op-{i}", stake=(i + 1) * ETH) for i in range(3)]
    OperatorLiveness.objects.create(
        operator_id=operators[0].operator_id, state="up", since=now, last_seen_at=now
    )
    OperatorLiveness.objects.create(operator_id=operators[1].operator_id, state="down", since=now)
    pending = batch_create(label="pending", created_block=110)
    verified = batch_create(label="verified", created_block=100, verified_block=104)
    batch_create(label="v2", created_block=105, fee_limit=None, event_version=2)
    BatchProgress.objects.create(
        batch=pending,
        total_stake=6 * ETH,
        signed_stake=ETH,
        signed_operator_ids=[operators[0].operator_id],
        unsigned_operator_ids=[o.operator_id for o in operators[1:]],
        at_risk=True,
    )
    alert = Alert.objects.create(
        kind=AlertKind.OPERATOR_DOWN,
        subject=operators[1].operator_id,
        severity=AlertSeverity.WARNING,
        summary="operator down",
        details={"stake_share": "0.333333"},
        opened_at=now,
    )
    Alert.objects.create(
        kind=AlertKind.INGEST_LAG,
        severity=AlertSeverity.CRITICAL,
        state=AlertState.RESOLVED,
        summary="ingest lagging",
        opened_at=now - timedelta(hours=1),
        resolved_at=now,
        resolution="caught up",
        acknowledged_at=now,
        acknowledged_by="ops",
    )
    run = recovery_run_start(
        kind=RecoveryKind.REPLAY, scope=pending.identifier, requested_by="ops", dry_run=False
    )
    recovery_run_start(
        kind=RecoveryKind.CATCHUP, scope=operators[1].operator_id, requested_by="ops", dry_run=True
    )
    return {
        "path": {
            "alert_id": alert.id,
            "identifier": pending.identifier,
            "operator_id": operators[1].operator_id,
            "run_id": run.id,
        },
        "bodies": {
            "/api/v1/recovery/replays": {"all_pending": True, "dry_run": True},
            "/api/v1/recovery/catchups": {"operator_id": operators[1].operator_id},
            # Needs no chain: a verified batch is skipped, with the reason, and the request is recorded.
            "/api/v1/recovery/responses": {"batch": verified.identifier},
        },
    }


@pytest.fixture
def staff_key(django_user_model: Any) -> str:
    staff = django_user_model.objects.create_user(username="ops", is_staff=True)
    return api_token_create(user=staff, name="schemathesis", scope=TokenScope.WRITE, created_by="tests")[1]


@pytest.fixture
def known(db: None) -> dict[str, Any]:
    return _seed()


@pytest.fixture
def api_schema(known: dict[str, Any], settings: Any) -> Iterator[Any]:
    settings.API_WRITE_RATE = "100000/min"  # schemathesis writes far faster than a person
    # The app runs in this thread inside the test's transaction: keep Django from closing the connection at
    # the end of each request, as its own test client does.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/schema/", application, config=CONFIG)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _strategies(operation: Any, known: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """Generated positive and negative cases, then positive ones about objects that exist (random ids and
    identifiers almost never name one, so this is what reaches the 200s and 201s)."""
    for mode in GenerationMode:
        yield mode.value, operation.as_strategy(generation_mode=mode)
    path = {name: value for name, value in known["path"].items() if f"{{{name}}}" in operation.path}
    body = known["bodies"].get(operation.path) if operation.method.upper() == "POST" else None
    if path or body:
        kwargs: dict[str, Any] = {"path_parameters": path} if path else {}
        if body is not None:
            kwargs["body"] = body
        yield "existing objects", operation.as_strategy(generation_mode=GenerationMode.POSITIVE, **kwargs)


def _checker(strategy: Any, headers: dict[str, str], seen: set[int]) -> Callable[[], None]:
    """A bounded Hypothesis run of ``strategy``: every case sent to the app and its response validated."""

    @hypothesis.settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,  # the same cases every run: a failure here is reproducible
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=strategy)
    def check(case: schemathesis.Case) -> None:
        seen.add(case.call_and_validate(headers=headers).status_code)

    return check


def test_it_the_api_conforms_to_its_schema(api_schema: Any, known: dict[str, Any], staff_key: str) -> None:
    """Every operation, as a staff write token: no 500s; status codes, content types, headers and bodies as
    documented; schema-valid input accepted and invalid input refused; 401 where authentication is declared."""
    headers = {"Authorization": f"Token {staff_key}"}
    failures: list[str] = []
    statuses: dict[str, set[int]] = {}
    for result in api_schema.get_all_operations():
        operation = result.ok()
        for name, strategy in _strategies(operation, known):
            try:
                _checker(strategy, headers, statuses.setdefault(operation.label, set()))()
            except Exception as exc:  # collect every operation's failure, then report them all
                failures.append(f"{operation.label} [{name}]: {exc}")
    assert not failures, "\n\n".join(failures)
    assert len(statuses) >= 11, statuses
    # Each operation answered a success at least once: the run reached the views' real work.
    assert all(codes & {200, 201} for codes in statuses.values()), statuses
