"""Staff-requested recovery runs: plans, audit rows, tasks, the REST API (staff write tokens) and admin actions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from controlplane.auth import api_token_create
from controlplane.models import TokenScope
from intake.models import Signature, SignatureStatus
from ledger.models import Batch, BatchStatus, Operator
from recovery.models import RecoveryKind, RecoveryRun, RecoveryStatus, RecoveryTask
from recovery.services.forwarding import signature_payload
from recovery.services.runs import catchup_plan, recovery_run_start, replay_plan
from tests.factories import batch_create, hex32, operator_create

pytestmark = pytest.mark.django_db

REPLAYS = "/api/v1/recovery/replays"
CATCHUPS = "/api/v1/recovery/catchups"
RUNS = "/api/v1/recovery/runs"


def signature_create(
    *, batch: Batch, operator: Operator, status: str = SignatureStatus.VERIFIED
) -> Signature:
    return Signature.objects.create(
        batch_identifier=batch.identifier,
        batch_merkle_root=batch.merkle_root,
        sender_address=batch.sender,
        operator_id=operator.operator_id,
        signature_x=hex32(f"sx-{batch.identifier}-{operator.operator_id}-{status}"),
        signature_y=hex32(f"sy-{batch.identifier}-{operator.operator_id}-{status}"),
        status=status,
    )


def aged(*batches: Batch) -> None:
    """Batches seen long ago, past any catch-up grace period."""
    Batch.objects.filter(id__in=[b.id for b in batches]).update(
        first_seen_at=timezone.now() - timedelta(hours=1)
    )


@pytest.fixture
def ledger() -> dict[str, Any]:
    """Two operators; pending batches a (signed by both, one invalid extra) and b (unsigned); c verified."""
    alice = operator_create(label="alice", stake=10**18)
    bob = operator_create(label="bob", stake=10**18)
    a = batch_create(label="a", created_block=100)
    b = batch_create(label="b", created_block=101)
    c = batch_create(label="c", created_block=102, verified_block=105)
    signatures = [signature_create(batch=a, operator=alice), signature_create(batch=a, operator=bob)]
    signature_create(batch=a, operator=bob, status=SignatureStatus.INVALID)
    signature_create(batch=c, operator=alice)
    aged(a, b, c)
    return {"alice": alice, "bob": bob, "a": a, "b": b, "c": c, "signatures": signatures}


@pytest.fixture
def staff() -> User:
    return User.objects.create_user(username="ops-alice", password="pw-not-used", is_staff=True)


def token_client(user: User, scope: str = TokenScope.WRITE) -> APIClient:
    _, key = api_token_create(user=user, name=f"{user.username}-{scope}", scope=scope, created_by="tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def staff_api(staff: User) -> APIClient:
    return token_client(staff)


# --- services ---------------------------------------------------------------------------------


def test_it_a_dry_run_is_audited_and_requests_nothing(ledger: dict[str, Any]) -> None:
    a = ledger["a"]

    run = recovery_run_start(
        kind=RecoveryKind.REPLAY,
        scope=a.identifier.upper().replace("0X", "0x"),
        requested_by="ops",
        dry_run=True,
    )

    run.refresh_from_db()
    assert (run.kind, run.scope, run.requested_by, run.dry_run) == ("replay", a.identifier, "ops", True)
    assert run.outcome == "dry run: 1 batch would be replayed"
    assert RecoveryTask.objects.count() == 0
    [entry] = run.plan["batches"]
    assert entry["identifier"] == a.identifier
    assert entry["status"] == "pending"
    assert entry["verified_signatures"] == 2
    # Exactly what would be sent: the verified signatures' payloads, never the invalid one.
    assert entry["signatures"] == [signature_payload(s) for s in ledger["signatures"]]
    assert entry["announce"] == {
        "batchMerkleRoot": a.merkle_root,
        "senderAddress": a.sender,
        "taskCreatedBlock": a.task_created_block,
    }
    assert run.plan["skipped"] == []


def test_it_a_run_requests_one_task_per_pending_batch_and_never_replays_a_verified_one(
    ledger: dict[str, Any],
) -> None:
    a, b, c = ledger["a"], ledger["b"], ledger["c"]

    run = recovery_run_start(kind=RecoveryKind.REPLAY, scope="all-pending", requested_by="ops", dry_run=False)

    assert run.scope == "all-pending"
    assert [e["identifier"] for e in run.plan["batches"]] == [a.identifier, b.identifier]
    assert run.outcome == "2 replay tasks requested"
    tasks = list(RecoveryTask.objects.order_by("id"))
    assert [(t.kind, t.subject, t.status) for t in tasks] == [
        ("replay", a.identifier, RecoveryStatus.PENDING),
        ("replay", b.identifier, RecoveryStatus.PENDING),
    ]
    assert all(t.run_id == run.id and t.requested_by == "ops" and t.reason == f"run {run.id}" for t in tasks)

    verified = recovery_run_start(
        kind=RecoveryKind.REPLAY, scope=c.identifier, requested_by="ops", dry_run=False
    )

    assert verified.plan["batches"] == []
    [skip] = verified.plan["skipped"]
    assert skip["identifier"] == c.identifier
    assert "verified on chain at block 105" in skip["reason"]
    assert verified.outcome.startswith("nothing to do: already verified on chain")
    assert not RecoveryTask.objects.filter(subject=c.identifier).exists()

    # Asking again while the tasks are open requests nothing new (one open task per batch).
    again = recovery_run_start(
        kind=RecoveryKind.REPLAY, scope="all-pending", requested_by="bob", dry_run=False
    )
    assert again.outcome == "2 replay tasks requested (2 already open)"
    assert RecoveryTask.objects.count() == 2
    assert RecoveryRun.objects.count() == 3


def test_it_an_open_task_requested_by_no_run_joins_the_run(ledger: dict[str, Any]) -> None:
    from recovery.services.tasks import recovery_task_request

    system_task, _ = recovery_task_request(kind=RecoveryKind.REPLAY, subject=ledger["b"].identifier)

    run = recovery_run_start(
        kind=RecoveryKind.REPLAY, scope=ledger["b"].identifier, requested_by="ops", dry_run=False
    )

    system_task.refresh_from_db()
    assert system_task.run_id == run.id
    assert run.outcome == "1 replay task requested (1 already open)"


def test_it_bad_scopes_are_refused_with_a_clear_message(ledger: dict[str, Any]) -> None:
    unknown = hex32("no-such-batch")
    with pytest.raises(ValueError, match=f"no batch with identifier {unknown}"):
        replay_plan(scope=unknown)
    with pytest.raises(ValueError, match="0x followed by 64 hex digits"):
        replay_plan(scope="0x1234")
    with pytest.raises(ValueError, match="no operator"):
        catchup_plan(operator_id=hex32("no-such-operator"))
    with pytest.raises(ValueError, match="no operator"):
        recovery_run_start(kind=RecoveryKind.CATCHUP, scope=hex32("nobody"), requested_by="ops", dry_run=True)
    assert RecoveryRun.objects.count() == 0


def test_it_all_pending_with_nothing_pending_is_nothing_to_do() -> None:
    batch_create(label="done", verified_block=7, created_block=5)

    run = recovery_run_start(kind=RecoveryKind.REPLAY, scope="all-pending", requested_by="ops", dry_run=False)

    assert run.outcome == "nothing to do: no pending batch"
    assert RecoveryTask.objects.count() == 0


def test_it_a_catchup_plans_only_the_batches_the_operator_has_not_signed(ledger: dict[str, Any]) -> None:
    alice = ledger["alice"]
    d = batch_create(label="d", created_block=103)
    signature_create(batch=d, operator=ledger["bob"])
    aged(d)

    plan = catchup_plan(operator_id=alice.operator_id)

    assert plan["operator_id"] == alice.operator_id
    assert plan["socket"] == alice.socket
    identifiers = [entry["identifier"] for entry in plan["batches"]]
    assert ledger["a"].identifier not in identifiers, "alice signed a"
    assert ledger["c"].identifier not in identifiers, "c is verified on chain"
    assert sorted(identifiers) == sorted([ledger["b"].identifier, d.identifier])
    b_entry = next(e for e in plan["batches"] if e["identifier"] == ledger["b"].identifier)
    assert b_entry == {
        "identifier": ledger["b"].identifier,
        "batchMerkleRoot": ledger["b"].merkle_root,
        "senderAddress": ledger["b"].sender,
        "batchDataPointer": ledger["b"].data_pointer,
    }

    dry = recovery_run_start(
        kind=RecoveryKind.CATCHUP, scope=alice.operator_id, requested_by="ops", dry_run=True
    )
    assert dry.outcome == "dry run: the operator would be asked to catch up on 2 batches"
    assert RecoveryTask.objects.count() == 0

    run = recovery_run_start(
        kind=RecoveryKind.CATCHUP, scope=alice.operator_id, requested_by="ops", dry_run=False
    )
    assert run.outcome == "catch-up task requested for 2 batches"
    [task] = RecoveryTask.objects.all()
    assert (task.kind, task.subject, task.run_id) == ("catchup", alice.operator_id, run.id)


# --- REST API ---------------------------------------------------------------------------------


def test_it_starting_a_run_needs_a_staff_write_token(ledger: dict[str, Any], staff: User) -> None:
    body = {"batch": ledger["a"].identifier}
    anonymous = APIClient()
    response = anonymous.post(REPLAYS, body, format="json")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert "error" in response.json()
    assert anonymous.get(RUNS).status_code == 401
    bad_token = APIClient()
    bad_token.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert bad_token.post(REPLAYS, body, format="json").status_code == 401

    user = User.objects.create_user(username="someone", password="pw-not-used")
    not_staff = token_client(user, TokenScope.READ)
    assert not_staff.post(REPLAYS, body, format="json").status_code == 403
    assert (
        not_staff.post(CATCHUPS, {"operator_id": ledger["alice"].operator_id}, format="json").status_code
        == 403
    )
    assert not_staff.get(RUNS).status_code == 200, "following runs is a read"
    # Read tokens cannot trigger recovery, even a staff user's.
    staff_reader = token_client(staff, TokenScope.READ)
    refused = staff_reader.post(REPLAYS, body, format="json")
    assert refused.status_code == 403
    assert refused.json() == {"error": "this token is read-only; writes need a write token"}
    assert RecoveryRun.objects.count() == 0

    # A non-staff browser session can read runs but not start one.
    session = APIClient()
    session.force_login(user)
    assert session.get(RUNS).status_code == 200
    assert session.post(REPLAYS, body, format="json").json() == {"error": "writes need a staff user"}
    assert RecoveryRun.objects.count() == 0

    # A browser session is accepted but keeps CSRF enforcement for writes.
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(staff)
    assert browser.get(RUNS).status_code == 200
    refused = browser.post(REPLAYS, body, format="json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["error"]
    assert RecoveryRun.objects.count() == 0


def test_it_a_staff_token_starts_a_replay(ledger: dict[str, Any], staff_api: APIClient) -> None:
    a = ledger["a"]

    response = staff_api.post(REPLAYS, {"batch": a.identifier}, format="json")

    assert response.status_code == 201
    body = response.json()
    run = RecoveryRun.objects.get()
    assert response["Location"] == f"{RUNS}/{run.id}"
    assert set(body) == {
        "id",
        "kind",
        "scope",
        "requested_by",
        "dry_run",
        "plan",
        "outcome",
        "created_at",
        "tasks",
    }
    assert body["id"] == run.id
    assert (body["kind"], body["scope"], body["requested_by"], body["dry_run"]) == (
        "replay",
        a.identifier,
        "ops-alice",
        False,
    )
    assert body["outcome"] == "1 replay task requested"
    assert body["plan"]["batches"][0]["verified_signatures"] == 2
    [task] = body["tasks"]
    assert task == {
        "id": RecoveryTask.objects.get().id,
        "kind": "replay",
        "subject": a.identifier,
        "status": "pending",
        "attempts": 0,
        "last_error": "",
    }


def test_it_api_dry_runs_and_all_pending(ledger: dict[str, Any], staff_api: APIClient) -> None:
    dry = staff_api.post(REPLAYS, {"all_pending": True, "dry_run": True}, format="json")
    assert dry.status_code == 200
    assert dry.json()["dry_run"] is True
    assert dry.json()["tasks"] == []
    assert dry.json()["outcome"] == "dry run: 2 batches would be replayed"
    assert RecoveryTask.objects.count() == 0

    real = staff_api.post(REPLAYS, {"all_pending": True}, format="json")
    assert real.status_code == 201
    assert sorted(t["subject"] for t in real.json()["tasks"]) == sorted(
        [ledger["a"].identifier, ledger["b"].identifier]
    )

    verified = staff_api.post(REPLAYS, {"batch": ledger["c"].identifier}, format="json")
    assert verified.status_code == 201
    assert verified.json()["tasks"] == []
    assert verified.json()["plan"]["skipped"][0]["identifier"] == ledger["c"].identifier

    catchup = staff_api.post(
        CATCHUPS, {"operator_id": ledger["bob"].operator_id, "dry_run": True}, format="json"
    )
    assert catchup.status_code == 200
    assert catchup.json()["kind"] == "catchup"
    assert [e["identifier"] for e in catchup.json()["plan"]["batches"]] == [ledger["b"].identifier]


@pytest.mark.parametrize(
    ("url", "body", "field", "message"),
    [
        (REPLAYS, {}, "batch", "batch"),
        (REPLAYS, {"all_pending": False}, "batch", "batch"),
        (REPLAYS, {"batch": "0x12"}, "batch", "64 hex digits"),
        (REPLAYS, {"batch": hex32("unknown")}, "batch", "no batch with identifier"),
        (REPLAYS, {"batch": 17}, "batch", "64 hex digits"),
        (REPLAYS, {"batch": "BATCH", "all_pending": True}, "all_pending", "not both"),
        (REPLAYS, {"all_pending": "maybe"}, "all_pending", "valid boolean"),
        (REPLAYS, {"batch": hex32("x"), "dry_run": "maybe"}, "dry_run", "valid boolean"),
        (REPLAYS, {"batches": [hex32("x")]}, "batches", "unknown field"),
        (CATCHUPS, {}, "operator_id", "required"),
        (CATCHUPS, {"operator_id": "0xnope"}, "operator_id", "64 hex digits"),
        (CATCHUPS, {"operator_id": hex32("nobody")}, "operator_id", "no operator"),
    ],
)
def test_it_bad_input_is_400_naming_the_field(
    ledger: dict[str, Any], staff_api: APIClient, url: str, body: dict[str, Any], field: str, message: str
) -> None:
    response = staff_api.post(url, body, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["field"] == field
    assert message in response.json()["error"]
    assert RecoveryRun.objects.count() == 0


def test_it_a_body_that_is_not_an_object_is_400(staff_api: APIClient) -> None:
    assert staff_api.post(REPLAYS, [1, 2], format="json").status_code == 400
    malformed = staff_api.post(REPLAYS, "{nope", content_type="application/json")
    assert malformed.status_code == 400
    assert "error" in malformed.json()


def test_it_runs_are_listed_newest_first_with_their_tasks(
    ledger: dict[str, Any], staff_api: APIClient
) -> None:
    first = recovery_run_start(kind=RecoveryKind.REPLAY, scope="all-pending", requested_by="x", dry_run=True)
    second = recovery_run_start(
        kind=RecoveryKind.REPLAY, scope=ledger["b"].identifier, requested_by="y", dry_run=False
    )
    third = recovery_run_start(
        kind=RecoveryKind.CATCHUP, scope=ledger["bob"].operator_id, requested_by="z", dry_run=True
    )

    response = staff_api.get(RUNS)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3
    assert [r["id"] for r in body["results"]] == [third.id, second.id, first.id]
    assert [t["subject"] for t in body["results"][1]["tasks"]] == [ledger["b"].identifier]
    assert staff_api.get(f"{RUNS}?page=2").status_code == 404
    assert staff_api.get(f"{RUNS}?page=x").json()["field"] == "page"

    detail = staff_api.get(f"{RUNS}/{second.id}")
    assert detail.status_code == 200
    assert detail.json()["outcome"] == "1 replay task requested"
    assert staff_api.get(f"{RUNS}/{third.id + 100}").status_code == 404
    assert staff_api.get(f"{RUNS}/abc").json() == {"error": "no run with this id", "field": "id"}


def test_it_runs_are_filtered_by_kind_and_dry_run(ledger: dict[str, Any], staff_api: APIClient) -> None:
    dry_replay = recovery_run_start(
        kind=RecoveryKind.REPLAY, scope="all-pending", requested_by="x", dry_run=True
    )
    replay = recovery_run_start(
        kind=RecoveryKind.REPLAY, scope=ledger["b"].identifier, requested_by="y", dry_run=False
    )
    catchup = recovery_run_start(
        kind=RecoveryKind.CATCHUP, scope=ledger["bob"].operator_id, requested_by="z", dry_run=True
    )

    def ids(query: str) -> list[int]:
        response = staff_api.get(f"{RUNS}?{query}")
        assert response.status_code == 200, response.content
        return [r["id"] for r in response.json()["results"]]

    assert ids("kind=replay") == [replay.id, dry_replay.id]
    assert ids("kind=catchup") == [catchup.id]
    assert ids("dry_run=true") == [catchup.id, dry_replay.id]
    assert ids("dry_run=0") == [replay.id]
    assert ids("kind=replay&dry_run=false") == [replay.id]
    bad_kind = staff_api.get(f"{RUNS}?kind=reboot")
    assert bad_kind.status_code == 400
    assert bad_kind.json()["field"] == "kind"
    bad_bool = staff_api.get(f"{RUNS}/?dry_run=maybe")
    assert bad_bool.json() == {"error": "dry_run: must be true or false", "field": "dry_run"}


# --- admin ------------------------------------------------------------------------------------


def _admin_client(user: User, *codenames: str) -> Client:
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def test_it_admin_batch_actions_start_audited_runs(ledger: dict[str, Any], staff: User) -> None:
    client = _admin_client(staff, "view_batch")
    a, c = ledger["a"], ledger["c"]

    dry = client.post(
        "/admin/ledger/batch/",
        {"action": "replay_dry_run", "_selected_action": [a.id, c.id], "index": 0},
        follow=True,
    )

    assert dry.status_code == 200
    texts = [str(m) for m in dry.context["messages"]]
    assert any(
        "Dry run: 1 batch(es) would be replayed, 2 verified signature(s)" in t and a.identifier in t
        for t in texts
    )
    assert any(c.identifier in t and "never replayed" in t for t in texts)
    runs = list(RecoveryRun.objects.order_by("id"))
    assert [(r.scope, r.requested_by, r.dry_run) for r in runs] == [
        (a.identifier, "ops-alice", True),
        (c.identifier, "ops-alice", True),
    ]
    assert RecoveryTask.objects.count() == 0

    real = client.post(
        "/admin/ledger/batch/",
        {"action": "replay", "_selected_action": [a.id, c.id], "index": 0},
        follow=True,
    )

    assert real.status_code == 200
    [task] = RecoveryTask.objects.all()
    assert task.subject == a.identifier
    assert task.run is not None
    assert task.run.requested_by == "ops-alice"
    assert not task.run.dry_run


def test_it_admin_operator_actions_start_catchups(ledger: dict[str, Any], staff: User) -> None:
    client = _admin_client(staff, "view_operator")
    bob = ledger["bob"]

    dry = client.post(
        "/admin/ledger/operator/",
        {"action": "catchup_dry_run", "_selected_action": [bob.id], "index": 0},
        follow=True,
    )

    texts = [str(m) for m in dry.context["messages"]]
    assert any("would be asked to catch up on 1 batch" in t and ledger["b"].identifier in t for t in texts)
    run = RecoveryRun.objects.get()
    assert (run.kind, run.scope, run.requested_by, run.dry_run) == (
        "catchup",
        bob.operator_id,
        "ops-alice",
        True,
    )

    client.post("/admin/ledger/operator/", {"action": "catchup", "_selected_action": [bob.id], "index": 0})

    [task] = RecoveryTask.objects.all()
    assert (task.kind, task.subject, task.requested_by) == ("catchup", bob.operator_id, "ops-alice")


def test_it_admin_starts_an_all_pending_replay_and_shows_its_plan(
    ledger: dict[str, Any], staff: User
) -> None:
    client = _admin_client(staff, "add_recoveryrun", "view_recoveryrun", "view_recoverytask")

    refused = client.post(
        "/admin/recovery/recoveryrun/add/", {"kind": "replay", "scope": hex32("unknown"), "dry_run": "on"}
    )
    assert refused.status_code == 200
    assert "no batch with identifier" in refused.content.decode()
    assert RecoveryRun.objects.count() == 0

    response = client.post("/admin/recovery/recoveryrun/add/", {"kind": "replay", "scope": "all-pending"})

    run = RecoveryRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/admin/recovery/recoveryrun/{run.id}/change/"
    assert (run.scope, run.requested_by, run.dry_run) == ("all-pending", "ops-alice", False)
    assert RecoveryTask.objects.filter(run=run).count() == 2

    detail = client.get(response["Location"])
    assert detail.status_code == 200
    page = detail.content.decode()
    assert ledger["a"].identifier in page
    assert "2 replay tasks requested" in page
    assert client.get("/admin/recovery/recoverytask/").status_code == 200
    assert client.get("/admin/recovery/recoveryrun/").status_code == 200


def test_it_admin_actions_need_staff(ledger: dict[str, Any]) -> None:
    user = User.objects.create_user(username="not-staff", password="pw-not-used")
    client = _admin_client(user, "view_batch")

    response = client.post(
        "/admin/ledger/batch/", {"action": "replay", "_selected_action": [ledger["a"].id], "index": 0}
    )

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert RecoveryRun.objects.count() == 0
    assert Batch.objects.filter(status=BatchStatus.PENDING).count() == 2
