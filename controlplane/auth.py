"""Who may use the REST API: token and session authentication, the read/write permission, the write throttle.

- Machines send ``Authorization: Token <key>`` (or ``Bearer <key>``); keys are stored only as SHA-256 hashes.
- Browsers use their session; DRF's SessionAuthentication enforces CSRF on writes.
- Reads need any authenticated user, or nobody when ``PUBLIC_DASHBOARD`` is on. Writes need a staff user, and
  when they come with a token, a write-scoped one. No credentials: 401 with ``WWW-Authenticate: Token``.
- Writes are rate limited per user (``API_WRITE_RATE``) in the shared cache, so replicas share the counts.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Q
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.throttling import UserRateThrottle

from controlplane.models import ApiToken, TokenScope
from controlplane.outages import redis_outage

if TYPE_CHECKING:
    # Imported lazily by DRF from the settings: importing rest_framework.views here would be circular.
    from rest_framework.request import Request
    from rest_framework.views import APIView

logger = logging.getLogger("controlplane.auth")

KEY_PREFIX = "cpt_"
# Characters of the key kept in clear (with KEY_PREFIX): enough to tell tokens apart, useless to an attacker.
SHOWN_PREFIX_LENGTH = 12
# last_used_at is written at most this often per token, so authenticated reads stay free of writes.
LAST_USED_RESOLUTION = timedelta(seconds=60)
KEYWORDS = (b"token", b"bearer")


# --- Services ----------------------------------------------------------------------------------


def api_token_hash(*, key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_token_key_assign(*, token: ApiToken) -> str:
    """Give an unsaved token a fresh key (kept only as its hash and prefix) and return the key, once."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    token.key_hash = api_token_hash(key=key)
    token.prefix = key[:SHOWN_PREFIX_LENGTH]
    return key


def api_token_scope_check(*, user: User, scope: str) -> None:
    """Raise ValueError for a token that could never be used as scoped: writes are for staff only."""
    if scope == TokenScope.WRITE and not user.is_staff:
        raise ValueError("write tokens can only be given to staff users")


def api_token_create(*, user: User, name: str, scope: str, created_by: str) -> tuple[ApiToken, str]:
    """A new token and its key; the key cannot be recovered later (only its hash is stored)."""
    api_token_scope_check(user=user, scope=scope)
    token = ApiToken(user=user, name=name, scope=scope, created_by=created_by)
    key = api_token_key_assign(token=token)
    token.save()
    return token, key


def api_token_revoke(*, token: ApiToken, revoked_by: str) -> bool:
    """Revoke ``token``; False when it already was (the first revocation is the one recorded)."""
    revoked = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_by=revoked_by
    )
    token.refresh_from_db(fields=["revoked_at", "revoked_by"])
    return revoked == 1


def api_token_authenticate(*, key: str) -> ApiToken:
    """The active token with this key (its last use recorded), or AuthenticationFailed saying why not."""
    token = ApiToken.objects.select_related("user").filter(key_hash=api_token_hash(key=key)).first()
    if token is None:
        raise AuthenticationFailed("invalid token")
    if token.revoked_at is not None:
        raise AuthenticationFailed("this token was revoked")
    if not token.user.is_active:
        raise AuthenticationFailed("this token's user is inactive")
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION), pk=token.pk
        ).update(last_used_at=now)
    return token


# --- DRF classes -------------------------------------------------------------------------------


class ApiTokenAuthentication(BaseAuthentication):
    """``Authorization: Token <key>`` or ``Authorization: Bearer <key>``; ``request.auth`` is the ApiToken."""

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in KEYWORDS:
            return None  # not ours: the session may still authenticate the request
        if len(parts) != 2:
            raise AuthenticationFailed("malformed Authorization header: send 'Token <key>'")
        try:
            key = parts[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise AuthenticationFailed("invalid token") from exc
        token = api_token_authenticate(key=key)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return "Token"


class ApiAccess(BasePermission):
    """Reads: any authenticated user (anyone with PUBLIC_DASHBOARD). Writes: staff, and write-scoped tokens."""

    message = "you do not have permission to perform this action"

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        authenticated = bool(user is not None and user.is_authenticated)
        if request.method in SAFE_METHODS:
            return authenticated or bool(settings.PUBLIC_DASHBOARD)
        if not authenticated:
            return False  # DRF answers 401 here, since no authenticator succeeded
        if isinstance(request.auth, ApiToken) and request.auth.scope != TokenScope.WRITE:
            self.message = "this token is read-only; writes need a write token"
            return False
        if not user.is_staff:
            self.message = "writes need a staff user"
            return False
        return True


class WriteRateThrottle(UserRateThrottle):
    """At most API_WRITE_RATE writes per user, counted in the shared (Redis) cache; reads are not throttled.

    When the cache cannot be reached, writes are refused (fail closed): a write is a person's action (a replay,
    an acknowledgement) that can wait for Redis; an unthrottled one could not be taken back.
    """

    scope = "write"

    def get_rate(self) -> str:
        return str(settings.API_WRITE_RATE)

    def allow_request(self, request: Request, view: APIView) -> bool:
        if request.method in SAFE_METHODS:
            return True
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # RedisError, OSError, and what redis-py raises mid-reconnect under load
            redis_outage.note(f"API writes refused: the write throttle cannot count ({exc})")
            self.wait_seconds: float | None = 5.0
            return False

    def wait(self) -> float | None:
        if getattr(self, "wait_seconds", None) is not None:
            return self.wait_seconds  # the cache is away: try again shortly
        return super().wait()
