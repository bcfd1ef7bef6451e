"""OpenAPI schema generation (drf-spectacular): the error responses every operation can give, and hooks.

Each operation documents, besides its own responses, the ones the machinery around it answers: 401 (no or bad
credentials), 403 and 429 on writes — all in the one error shape ``{"error", "field"?}``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework.permissions import SAFE_METHODS

from api.errors import ErrorSerializer
from controlplane.auth import ApiAccess, ApiTokenAuthentication

ERROR_DESCRIPTIONS = {
    "400": "Malformed input; `field` names it.",
    "401": "No credentials, or an invalid or revoked token.",
    "403": "Not allowed: a read-only token, a non-staff user, or a missing CSRF token on a session write.",
    "404": "Nothing here.",
    "429": "Too many writes; retry after `Retry-After` seconds.",
}
RESPONSE_HEADERS = {
    "401": {
        "WWW-Authenticate": {
            "schema": {"type": "string"},
            "description": "The scheme to authenticate with: `Token`.",
        }
    },
    "429": {
        "Retry-After": {
            "schema": {"type": "integer", "minimum": 0},
            "description": "Seconds until the next write is allowed.",
        }
    },
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    """``responses=`` entries for extend_schema: these status codes answer the error shape."""
    return {
        code: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[str(code)]) for code in codes
    }


class ApiAutoSchema(AutoSchema):
    """Adds the authentication, permission and throttling errors to every operation guarded by ApiAccess."""

    def _guarded(self) -> bool:
        return any(isinstance(permission, ApiAccess) for permission in self.view.get_permissions())

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        if not self._guarded():
            return responses
        codes = ["401"] if self.method in SAFE_METHODS else ["400", "401", "403", "429"]
        for code in codes:
            if code not in responses:
                responses[code] = self._get_response_for_code(
                    OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[code]), code
                )
            if code in RESPONSE_HEADERS:
                responses[code].setdefault("headers", {}).update(RESPONSE_HEADERS[code])
        return responses

    def get_tags(self) -> list[str]:
        # /api/v1/<resource>/...: group operations by resource rather than all under "v1".
        tokens = self._tokenize_path()
        return [tokens[1]] if len(tokens) > 1 else super().get_tags()

    def get_auth(self) -> list[dict[str, Any]]:
        auths: list[dict[str, Any]] = super().get_auth()
        if self._guarded() and self.method in SAFE_METHODS and settings.PUBLIC_DASHBOARD and {} not in auths:
            auths.append({})  # a public dashboard's reads need no credentials
        return auths


def close_input_objects(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Spectacular postprocessing hook: request bodies (``*Input`` components) refuse unknown fields, as the
    views do (a misspelt ``dry_run`` must not silently start a real run)."""
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Input") and component.get("type") == "object":
            component["additionalProperties"] = False
    return result


def allow_empty_filters(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Spectacular postprocessing hook: an empty filter (``?state=``) means no filter, as django-filter reads it."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "query" and parameter.get("name") != "page":
                    parameter["allowEmptyValue"] = True
    return result


def drop_trailing_slash_aliases(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list[tuple[Any, ...]]:
    """Spectacular preprocessing hook: paths served both with and without a trailing slash appear once."""
    paths = {endpoint[0] for endpoint in endpoints}
    return [
        endpoint
        for endpoint in endpoints
        if not (endpoint[0].endswith("/") and endpoint[0].rstrip("/") in paths)
    ]


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """How the token authentication is described in the schema (registered by defining this class)."""

    target_class = ApiTokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token created by staff in the admin: `Authorization: Token <key>` "
            "(or `Bearer <key>`). Read tokens can only read; writes need a staff user's write token.",
        }
