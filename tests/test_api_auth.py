"""Who may use the API: tokens (read/write scope, revocation), sessions (CSRF), the write throttle, error bodies."""

from __future__ import annotations

import hashlib
import socket
from typing import Any

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.middleware.csrf import get_token
from django.test import Client, RequestFactory, override_settings
from django.utils import timezone

from alerts.models import Alert, AlertKind, AlertSeverity
from controlplane.auth import api_token_create, api_token_revoke
from controlplane.models import ApiToken, TokenScope
from recovery.models import RecoveryRun
from tests.factories import batch_create
from tests.redis_keys import redis_forget

pytestmark = pytest.mark.django_db

BATCHES = "/api/v1/batches/"
ALERTS = "/api/v1/alerts/"
RUNS = "/api/v1/recovery/runs"
REPLAYS = "/api/v1/recovery/replays"


@pytest.fixture(autouse=True)
def _fresh_throttle_counts() -> None:
    # Throttle counts live in Redis, keyed by user id, and outlast a test database: start from zero.
    redis_forget("*throttle_write_*")


@pytest.fixture
def staff() -> User:
    return User.objects.create_user(username="ops", is_staff=True)


@pytest.fixture
def member() -> User:
    return User.objects.create_user(username="viewer")


@pytest.fixture
def alert() -> Alert:
    return Alert.objects.create(
        kind=AlertKind.OPERATOR_DOWN,
        subject="0x" + "ab" * 32,
        severity=AlertSeverity.WARNING,
        summary="operator down",
        opened_at=timezone.now(),
    )


def token_client(user: User, scope: str, *, keyword: str = "Token") -> Client:
    _, key = api_token_create(user=user, name=f"{user.username}-{scope}", scope=scope, created_by="tests")
    return Client(headers={"authorization": f"{keyword} {key}"})


def ack_url(alert: Alert) -> str:
    return f"/api/v1/alerts/{alert.id}/acknowledge"


def dry_replay(client: Client, **extra: Any) -> Any:
    return client.post(
        REPLAYS, {"all_pending": True, "dry_run": True}, content_type="application/json", **extra
    )


def test_it_answers_401_with_www_authenticate_without_credentials(alert: Alert) -> None:
    anonymous = Client()

    for response in (
        anonymous.get(BATCHES),
        anonymous.get(ALERTS),
        anonymous.get(f"{ALERTS}{alert.id}/"),
        anonymous.get(RUNS),
        anonymous.post(ack_url(alert)),
        dry_replay(anonymous),
    ):
        assert response.status_code == 401, response.request["PATH_INFO"]
        assert response["WWW-Authenticate"] == "Token"
        assert response.json() == {"error": "Authentication credentials were not provided."}
    alert.refresh_from_db()
    assert alert.acknowledged_at is None
    assert RecoveryRun.objects.count() == 0


def test_it_lets_a_read_token_read_but_never_write(member: User, staff: User, alert: Alert) -> None:
    batch_create(label="one")
    for reader in (token_client(member, TokenScope.READ), token_client(staff, TokenScope.READ)):
        assert reader.get(BATCHES).json()["count"] == 1
        assert reader.get(f"{ALERTS}{alert.id}/").status_code == 200

        ack = reader.post(ack_url(alert))
        replay = dry_replay(reader)

        assert ack.status_code == 403
        assert ack.json() == {"error": "this token is read-only; writes need a write token"}
        assert replay.status_code == 403
    alert.refresh_from_db()
    assert alert.acknowledged_at is None
    assert RecoveryRun.objects.count() == 0


def test_it_lets_a_staff_users_write_token_write(staff: User, alert: Alert) -> None:
    writer = token_client(staff, TokenScope.WRITE)

    ack = writer.post(ack_url(alert))
    replay = dry_replay(writer)

    assert ack.status_code == 200
    assert ack.json()["acknowledged_by"] == "ops"
    assert replay.status_code == 200
    assert RecoveryRun.objects.get().requested_by == "ops"


def test_it_accepts_the_bearer_keyword_too(staff: User, alert: Alert) -> None:
    writer = token_client(staff, TokenScope.WRITE, keyword="Bearer")

    assert writer.get(ALERTS).status_code == 200
    assert writer.post(ack_url(alert)).status_code == 200


def test_it_refuses_writes_by_a_write_token_whose_user_is_no_longer_staff(staff: User, alert: Alert) -> None:
    writer = token_client(staff, TokenScope.WRITE)
    User.objects.filter(pk=staff.pk).update(is_staff=False)

    response = writer.post(ack_url(alert))

    assert response.status_code == 403
    assert response.json() == {"error": "writes need a staff user"}
    assert writer.get(ALERTS).status_code == 200


def test_it_refuses_to_issue_a_write_token_to_a_non_staff_user(member: User) -> None:
    with pytest.raises(ValueError, match="staff"):
        api_token_create(user=member, name="nope", scope=TokenScope.WRITE, created_by="tests")
    assert ApiToken.objects.count() == 0


def test_it_answers_401_for_a_revoked_unknown_or_malformed_token(staff: User, alert: Alert) -> None:
    token, key = api_token_create(user=staff, name="ci", scope=TokenScope.WRITE, created_by="tests")
    writer = Client(headers={"authorization": f"Token {key}"})
    assert writer.get(ALERTS).status_code == 200

    assert api_token_revoke(token=token, revoked_by="boss") is True
    assert api_token_revoke(token=token, revoked_by="someone-else") is False, "revoked once"
    token.refresh_from_db()
    assert token.revoked_by == "boss"

    revoked = writer.post(ack_url(alert))
    assert revoked.status_code == 401
    assert revoked.json() == {"error": "this token was revoked"}
    assert revoked["WWW-Authenticate"] == "Token"
    assert writer.get(ALERTS).status_code == 401
    for header in (f"Token {key[:-1]}x", "Token", f"Token {key} extra", "Bearer \u00e9t\u00e9"):
        response = Client(headers={"authorization": header}).get(ALERTS)
        assert response.status_code == 401, header
        assert set(response.json()) == {"error"}
    alert.refresh_from_db()
    assert alert.acknowledged_at is None


def test_it_answers_401_for_the_token_of_an_inactive_user(staff: User) -> None:
    reader = token_client(staff, TokenScope.READ)
    User.objects.filter(pk=staff.pk).update(is_active=False)

    response = reader.get(ALERTS)

    assert response.status_code == 401
    assert response.json() == {"error": "this token's user is inactive"}


def test_it_stores_only_a_hash_of_the_key_and_records_its_last_use(staff: User) -> None:
    token, key = api_token_create(user=staff, name="ci", scope=TokenScope.READ, created_by="ops")

    assert key.startswith("cpt_")
    assert len(key) > 40
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert token.prefix == key[:12]
    assert key not in str(ApiToken.objects.filter(pk=token.pk).values().get())
    assert token.last_used_at is None

    Client(headers={"authorization": f"Token {key}"}).get(ALERTS)

    token.refresh_from_db()
    assert token.last_used_at is not None


def test_it_a_non_staff_session_reads_but_cannot_start_recovery_or_acknowledge(
    member: User, alert: Alert
) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(member)

    assert browser.get(RUNS).status_code == 200
    assert browser.get(ALERTS).status_code == 200
    refused = dry_replay(browser)
    assert refused.status_code == 403
    assert browser.post(ack_url(alert)).status_code == 403
    assert RecoveryRun.objects.count() == 0


def test_it_a_staff_session_writes_only_with_its_csrf_token(staff: User, alert: Alert) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(staff)

    refused = browser.post(ack_url(alert))
    assert refused.status_code == 403
    assert refused.json()["error"].startswith("CSRF Failed")
    alert.refresh_from_db()
    assert alert.acknowledged_at is None

    request = RequestFactory().get("/")
    masked = get_token(request)
    browser.cookies[settings.CSRF_COOKIE_NAME] = request.META["CSRF_COOKIE"]
    accepted = browser.post(ack_url(alert), content_type="application/json", headers={"x-csrftoken": masked})
    assert accepted.status_code == 200
    assert accepted.json()["acknowledged_by"] == "ops"


@override_settings(PUBLIC_DASHBOARD=True)
def test_it_a_public_dashboard_opens_reads_to_anyone_but_not_writes(alert: Alert) -> None:
    anonymous = Client()

    assert anonymous.get(ALERTS).json()["count"] == 1
    assert anonymous.get(BATCHES).status_code == 200
    assert anonymous.get(RUNS).status_code == 200
    assert anonymous.post(ack_url(alert)).status_code == 401
    assert dry_replay(anonymous).status_code == 401
    # A wrong token is still an error, not a silent anonymous read.
    assert Client(headers={"authorization": "Token wrong"}).get(ALERTS).status_code == 401


@override_settings(API_WRITE_RATE="3/min")
def test_it_throttles_writes_per_user_in_redis_with_retry_after(staff: User, alert: Alert) -> None:
    writer = token_client(staff, TokenScope.WRITE)
    other_staff = User.objects.create_user(username="ops-2", is_staff=True)
    other = token_client(other_staff, TokenScope.WRITE)

    codes = [writer.post(ack_url(alert)).status_code for _ in range(3)]
    throttled = writer.post(ack_url(alert))

    assert codes == [200, 200, 200]
    assert throttled.status_code == 429
    assert 0 < int(throttled["Retry-After"]) <= 60
    assert set(throttled.json()) == {"error"}
    assert "throttled" in throttled.json()["error"]
    assert dry_replay(writer).status_code == 429, "the limit covers every write of the user"
    assert writer.get(ALERTS).status_code == 200, "reads are not throttled"
    assert other.post(ack_url(alert)).status_code == 200, "counted per user"
    # Counted in Redis, where every replica sees the same count.
    keys = redis.Redis.from_url(settings.REDIS_URL).keys(f"*throttle_write_{staff.pk}")
    assert len(keys) == 1


def test_it_refuses_writes_while_the_throttle_cache_is_unreachable(staff: User, alert: Alert) -> None:
    writer = token_client(staff, TokenScope.WRITE)
    with socket.socket() as sock:  # a port nothing listens on: Redis is down
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    unreachable = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }

    with override_settings(CACHES=unreachable, API_WRITE_RATE="1/min"):
        refused = [writer.post(ack_url(alert)) for _ in range(3)]
        reads = writer.get("/api/v1/alerts/").status_code

    # Fail closed: an unthrottled write could not be taken back; it can wait for Redis. Reads are not throttled.
    assert [r.status_code for r in refused] == [429, 429, 429]
    assert refused[0]["Retry-After"] == "5"
    assert reads == 200
    assert writer.post(ack_url(alert)).status_code == 200, "with Redis back, writes go through again"


@pytest.mark.parametrize(
    ("method", "path", "status", "body"),
    [
        ("get", "/api/v1/nothing-here/", 404, {"error": "no such endpoint"}),
        ("get", "/api/v1/alerts/not-a-number/", 404, {"error": "no such endpoint"}),
        ("get", "/api/v1/alerts/987654321/", 404, {"error": "no alert with this id", "field": "id"}),
        ("delete", "/api/v1/batches/", 405, {"error": 'Method "DELETE" not allowed.'}),
        ("put", "/api/v1/alerts/1/acknowledge", 405, {"error": 'Method "PUT" not allowed.'}),
        (
            "get",
            "/api/v1/alerts/?severity=dire",
            400,
            {
                "error": "severity: Select a valid choice. dire is not one of the available choices.",
                "field": "severity",
            },
        ),
        (
            "get",
            "/api/v1/batches/?created_after=yesterday",
            400,
            {"error": "created_after: Enter a valid date/time.", "field": "created_after"},
        ),
    ],
)
def test_it_every_error_has_the_same_shape(
    staff: User, method: str, path: str, status: int, body: Any
) -> None:
    client = token_client(staff, TokenScope.WRITE)

    response = getattr(client, method)(path)

    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert response.json() == body


def test_it_a_body_that_is_not_json_is_415_in_the_same_shape(staff: User) -> None:
    writer = token_client(staff, TokenScope.WRITE)

    response = writer.post(REPLAYS, {"all_pending": "true"})  # a form post

    assert response.status_code == 415
    assert response.json() == {
        "error": 'Unsupported media type "multipart/form-data; boundary=BoUnDaRyStRiNg" in request.'
    }


def test_it_the_signature_intake_stays_open_without_credentials() -> None:
    response = Client().post("/api/v1/signatures", data="{}", content_type="application/json")

    assert response.status_code == 400, "its own checks answer, not authentication"
    assert "error" in response.json()
    assert "WWW-Authenticate" not in response


# --- tokens in the admin ----------------------------------------------------------------------

ADMIN_TOKENS = "/admin/controlplane/apitoken/"


def test_it_staff_create_a_token_in_the_admin_and_see_its_key_once(staff: User, alert: Alert) -> None:
    boss = User.objects.create_superuser(username="boss", password="pw-not-used")
    admin = Client()
    admin.force_login(boss)

    response = admin.post(
        f"{ADMIN_TOKENS}add/", {"name": "pager bridge", "user": staff.pk, "scope": "write"}, follow=True
    )

    assert response.status_code == 200
    [shown] = [str(m) for m in response.context["messages"] if "copy it now" in str(m)]
    key = shown.split(" is ", 1)[1].split(" ", 1)[0]
    token = ApiToken.objects.get()
    assert (token.name, token.user, token.scope, token.created_by) == ("pager bridge", staff, "write", "boss")
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in admin.get(ADMIN_TOKENS).content.decode()
    assert key not in admin.get(f"{ADMIN_TOKENS}{token.pk}/change/").content.decode()
    assert Client(headers={"authorization": f"Token {key}"}).post(ack_url(alert)).status_code == 200


def test_it_the_admin_refuses_a_write_token_for_a_non_staff_user(member: User) -> None:
    boss = User.objects.create_superuser(username="boss", password="pw-not-used")
    admin = Client()
    admin.force_login(boss)

    response = admin.post(f"{ADMIN_TOKENS}add/", {"name": "nope", "user": member.pk, "scope": "write"})

    assert response.status_code == 200
    assert "write tokens can only be given to staff users" in response.content.decode()
    assert ApiToken.objects.count() == 0


def test_it_staff_revoke_tokens_in_the_admin_and_cannot_delete_them(staff: User) -> None:
    boss = User.objects.create_superuser(username="boss", password="pw-not-used")
    admin = Client()
    admin.force_login(boss)
    token, key = api_token_create(user=staff, name="ci", scope=TokenScope.READ, created_by="boss")
    reader = Client(headers={"authorization": f"Token {key}"})
    assert reader.get(ALERTS).status_code == 200

    response = admin.post(ADMIN_TOKENS, {"action": "revoke", "_selected_action": [token.pk]}, follow=True)

    assert response.status_code == 200
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert token.revoked_by == "boss"
    assert reader.get(ALERTS).status_code == 401
    assert admin.get(f"{ADMIN_TOKENS}{token.pk}/delete/").status_code == 403
    assert ApiToken.objects.filter(pk=token.pk).exists(), "kept as the audit trail"
