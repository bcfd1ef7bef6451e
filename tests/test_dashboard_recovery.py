"""The recovery page: runs and their audit trail, work in flight, and the staff buttons that call the API."""

from __future__ import annotations

import json
import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from recovery.models import RecoveryKind, RecoveryRun, RecoveryStatus, RecoveryTask
from tests.factories import ETH, batch_create, operator_create

pytestmark = pytest.mark.django_db

REPLAYS = "/api/v1/recovery/replays"


@pytest.fixture
def user_client(django_user_model: type[User]) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(django_user_model.objects.create_user("viewer", password="x"))
    return client


@pytest.fixture
def staff_client(django_user_model: type[User]) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(django_user_model.objects.create_user("boss", password="x", is_staff=True))
    return client


def test_it_shows_runs_with_who_when_outcome_and_their_tasks(user_client: Client) -> None:
    batch = batch_create(label="stuck")
    operator = operator_create(label="late", stake=ETH)
    run = RecoveryRun.objects.create(
        kind=RecoveryKind.REPLAY,
        scope=batch.identifier,
        requested_by="alice",
        plan={"batches": [{"identifier": batch.identifier}], "skipped": []},
        outcome="1 replay task requested",
    )
    RecoveryTask.objects.create(
        kind=RecoveryKind.REPLAY,
        subject=batch.identifier,
        status=RecoveryStatus.RUNNING,
        attempts=3,
        last_error="aggregator answered 502",
        next_attempt_at=timezone.now(),
        run=run,
    )
    RecoveryRun.objects.create(
        kind=RecoveryKind.CATCHUP,
        scope=operator.operator_id,
        requested_by="bob",
        dry_run=True,
        outcome="dry run: the operator would be asked to catch up on 2 batches",
    )

    html = user_client.get("/recovery/").content.decode()

    runs = re.findall(r'data-testid="recovery-run" data-run-id="(\d+)"', html)
    assert runs == [str(run.id + 1), str(run.id)]  # newest first
    assert "by alice" in html
    assert "1 replay task requested" in html
    assert "by bob" in html
    assert "dry run: the operator would be asked to catch up on 2 batches" in html
    assert "aggregator answered 502" in html  # the task, in flight and in its run's trail
    assert re.search(
        r'<tr data-kind="replay"><th scope="row">replay</th><td class="num">0</td><td class="num">1</td>',
        html,
    )

    replays_only = user_client.get("/recovery/?kind=replay").content.decode()
    assert re.findall(r'data-testid="recovery-run" data-run-id="(\d+)"', replays_only) == [str(run.id)]


def test_it_buttons_are_shown_to_staff_only(user_client: Client, staff_client: Client) -> None:
    assert 'data-testid="recovery-start"' not in user_client.get("/recovery/").content.decode()
    assert "Start a run" not in user_client.get("/recovery/").content.decode()

    html = staff_client.get("/recovery/").content.decode()
    assert "Start a run" in html
    assert 'data-testid="recovery-dry-run"' in html
    assert 'data-testid="recovery-start"' in html
    assert 'data-replay-url="/api/v1/recovery/replays"' in html
    assert 'data-catchup-url="/api/v1/recovery/catchups"' in html


def test_it_a_staff_page_can_start_a_dry_run_with_its_csrf_token_and_others_cannot(
    user_client: Client, staff_client: Client
) -> None:
    batch = batch_create(label="pending")
    body = json.dumps({"batch": batch.identifier, "dry_run": True})

    staff_client.get(f"/batches/{batch.identifier}/")  # the page sets the CSRF cookie actions.js sends back
    token = staff_client.cookies["csrftoken"].value
    without = staff_client.post(REPLAYS, body, content_type="application/json")
    answer = staff_client.post(REPLAYS, body, content_type="application/json", headers={"X-CSRFToken": token})

    assert without.status_code == 403
    assert answer.status_code == 200, answer.content
    run = answer.json()
    assert run["dry_run"] is True
    assert run["requested_by"] == "boss"
    assert run["plan"]["batches"][0]["identifier"] == batch.identifier
    assert RecoveryTask.objects.count() == 0  # a dry run requests nothing

    user_client.get("/recovery/")
    refused = user_client.post(
        REPLAYS,
        body,
        content_type="application/json",
        headers={"X-CSRFToken": user_client.cookies["csrftoken"].value},
    )
    assert refused.status_code == 403
    assert RecoveryRun.objects.count() == 1


def test_it_the_page_has_a_csrf_token_for_the_buttons(staff_client: Client) -> None:
    html = staff_client.get("/recovery/").content.decode()

    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert match
    assert len(match.group(1)) >= 32


def test_it_the_recovery_page_costs_a_fixed_number_of_queries(
    user_client: Client, django_assert_max_num_queries: object
) -> None:
    for i in range(12):
        run = RecoveryRun.objects.create(kind=RecoveryKind.REPLAY, scope="all-pending", requested_by=f"u{i}")
        for j in range(2):
            RecoveryTask.objects.create(
                kind=RecoveryKind.FORWARD,
                subject=f"{i}-{j}",
                status=RecoveryStatus.DONE,
                next_attempt_at=timezone.now(),
                run=run,
            )

    # session, user, count, runs, their tasks, task counts, tasks in flight.
    with django_assert_max_num_queries(7):  # type: ignore[operator]
        html = user_client.get("/recovery/").content.decode()
    assert html.count('data-testid="recovery-run"') == 12
