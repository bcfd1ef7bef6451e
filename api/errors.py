"""One error shape for the whole API: ``{"error": "...", "field": "..."}`` (``field`` when one input is at fault).

``api_exception_handler`` is DRF's EXCEPTION_HANDLER: authentication (401), permission (403), not found (404),
method (405), media type (415), throttling (429, with Retry-After) and validation errors all come out this way.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers, status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler


class ApiError(APIException):
    """An error answered as ``{"error": message, "field": field}``."""

    def __init__(
        self, message: str, *, field: str | None = None, status_code: int = status.HTTP_400_BAD_REQUEST
    ) -> None:
        super().__init__(detail=message)
        self.status_code = status_code
        self.field = field


class ErrorSerializer(serializers.Serializer):
    """The body of every error response (for the schema)."""

    error = serializers.CharField(help_text="What went wrong, for a person.")
    field = serializers.CharField(required=False, help_text="The input at fault, when there is one.")


def _first_message(detail: Any) -> str:
    while isinstance(detail, list | dict) and detail:
        detail = detail[0] if isinstance(detail, list) else next(iter(detail.values()))
    return str(detail) if detail not in ([], {}) else "invalid request"


def validation_error_body(detail: Any) -> dict[str, str]:
    """The first error of a (serializer or filter) validation: ``{"error": "name: message", "field": "name"}``."""
    if isinstance(detail, dict) and detail:
        name, messages = next(iter(detail.items()))
        message = _first_message(messages)
        if name in ("non_field_errors", "__all__"):
            return {"error": message}
        return {"error": f"{name}: {message}", "field": str(name)}
    return {"error": _first_message(detail)}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler (status, Retry-After, WWW-Authenticate), with every body reshaped to ``{"error", "field"?}``."""
    response = exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    body: dict[str, Any]
    if isinstance(exc, ApiError):
        body = {"error": str(exc.detail)}
        if exc.field:
            body["field"] = exc.field
    elif isinstance(exc, ValidationError):
        body = validation_error_body(data)
    elif isinstance(data, dict) and "detail" in data:
        body = {"error": str(data["detail"])}
    else:
        body = {"error": _first_message(data)}
    response.data = body
    return response
