"""Read API views: thin adapters from HTTP to selectors and output serializers.

Errors have one shape: ``{"error": "...", "field": "..."}`` (``field`` when one input is at fault).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView, exception_handler

from monitoring.api.serializers import (
    BatchOutputSerializer,
    OperatorDetailOutputSerializer,
    OperatorOutputSerializer,
)
from monitoring.selectors import (
    batch_get,
    batch_list,
    bytes32_normalize,
    operator_get,
    operator_list,
    operator_stake_history,
    operator_total_current_stake,
)


class ApiError(APIException):
    """An error answered as ``{"error": message, "field": field}``."""

    def __init__(
        self, message: str, *, field: str | None = None, status_code: int = status.HTTP_400_BAD_REQUEST
    ) -> None:
        super().__init__(detail=message)
        self.status_code = status_code
        self.field = field


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, with every error body reshaped to ``{"error", "field"?}``."""
    response = exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    message = str(data["detail"]) if isinstance(data, dict) and "detail" in data else "invalid request"
    body: dict[str, Any] = {"error": message}
    field = getattr(exc, "field", None)
    if field:
        body["field"] = field
    response.data = body
    return response


class ApiView(APIView):
    """Base of the read API: open for now (authentication comes later), JSON errors in one shape."""

    permission_classes = [AllowAny]

    def get_exception_handler(self) -> Any:
        return api_exception_handler


class Pagination(PageNumberPagination):
    """Page-number pagination naming the ``page`` field in errors: 400 malformed, 404 past the end."""

    def paginate_queryset(
        self, queryset: Any, request: Request, view: APIView | None = None
    ) -> list[Any] | None:
        raw = request.query_params.get(self.page_query_param)
        if raw is not None and raw not in self.last_page_strings and not (raw.isdigit() and int(raw) >= 1):
            raise ApiError("page must be a positive integer", field=self.page_query_param)
        try:
            return super().paginate_queryset(queryset, request, view)
        except NotFound as exc:
            raise ApiError(
                f"page {raw} does not exist",
                field=self.page_query_param,
                status_code=status.HTTP_404_NOT_FOUND,
            ) from exc


def _bytes32_param(value: str, *, field: str) -> str:
    normalized = bytes32_normalize(value=value)
    if normalized is None:
        raise ApiError(f"{field} must be 0x followed by 64 hex digits", field=field)
    return normalized


def _paginated(view: ApiView, request: Request, queryset: QuerySet[Any], serialize: Any) -> Response:
    paginator = Pagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serialize(page))


class BatchListApi(ApiView):
    def get(self, request: Request) -> Response:
        return _paginated(
            self, request, batch_list(), lambda rows: BatchOutputSerializer(rows, many=True).data
        )


class BatchDetailApi(ApiView):
    def get(self, request: Request, identifier: str) -> Response:
        batch = batch_get(identifier=_bytes32_param(identifier, field="identifier"))
        if batch is None:
            raise ApiError(
                "no batch with this identifier", field="identifier", status_code=status.HTTP_404_NOT_FOUND
            )
        return Response(BatchOutputSerializer(batch).data)


class OperatorListApi(ApiView):
    def get(self, request: Request) -> Response:
        context = {"total_stake": operator_total_current_stake()}
        return _paginated(
            self,
            request,
            operator_list(),
            lambda rows: OperatorOutputSerializer(rows, many=True, context=context).data,
        )


class OperatorDetailApi(ApiView):
    def get(self, request: Request, operator_id: str) -> Response:
        operator = operator_get(operator_id=_bytes32_param(operator_id, field="operator_id"))
        if operator is None:
            raise ApiError(
                "no operator with this operator_id",
                field="operator_id",
                status_code=status.HTTP_404_NOT_FOUND,
            )
        context = {
            "total_stake": operator_total_current_stake(),
            "stake_history": operator_stake_history(operator_id=operator.operator_id),
        }
        return Response(OperatorDetailOutputSerializer(operator, context=context).data)
