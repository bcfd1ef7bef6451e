"""API views: thin adapters from HTTP to selectors, services and output serializers.

Authentication, permissions (``controlplane.auth.ApiAccess``), the write throttle and the error shape
(``{"error": "...", "field": "..."}``) come from the REST_FRAMEWORK settings, so every view here shares them.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db.models import QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.generics import ListAPIView
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import APIView

from alerts.models import Alert
from alerts.selectors import alert_get, alert_list
from alerts.services import alert_acknowledge
from api.errors import ApiError
from api.filters import AlertFilter, BatchFilter, OperatorFilter
from api.schema import error_responses
from api.serializers import (
    AlertOutputSerializer,
    BatchOutputSerializer,
    OperatorDetailOutputSerializer,
    OperatorOutputSerializer,
)
from controlplane.inputs import ascii_int
from controlplane.paging import CountedPaginator
from ledger.models import Batch, Operator
from ledger.selectors import (
    batch_count_known,
    batch_get,
    batch_list,
    bytes32_normalize,
    operator_get,
    operator_list,
    operator_stake_history,
    operator_total_current_stake,
)

__all__ = ["ApiError", "ApiListView", "ApiView", "Pagination"]

BYTES32_PATTERN = "^0x[0-9a-fA-F]{64}$"


class ApiView(APIView):
    """Base of the API's single-object and write views (each says what it does: that is its description)."""


class Pagination(PageNumberPagination):
    """Page-number pagination naming the ``page`` field in errors: 400 malformed, 404 past the end.

    A view with a ``keyset`` (its ordering, newest first, by ``created_block`` then ``id``) also takes ``cursor``:
    the page after the row the cursor names, found through the index however deep it is (a page number's
    offset costs more the deeper it goes). A cursor page's ``next`` is a cursor link; ``previous`` is null.
    A view's ``known_count(request)`` gives the count without counting, when it can.
    """

    cursor_query_param = "cursor"
    _cursor_next: str | None = None

    def paginate_queryset(
        self, queryset: Any, request: Request, view: APIView | None = None
    ) -> list[Any] | None:
        known = view.known_count(request) if view is not None and hasattr(view, "known_count") else None
        self.django_paginator_class = partial(CountedPaginator, known_count=known)
        self._count = known
        self._cursor_next = None
        # An empty cursor is no cursor, as an empty filter is no filter.
        if getattr(view, "keyset", False) and request.query_params.get(self.cursor_query_param):
            return self._keyset_page(queryset, request)
        raw = request.query_params.get(self.page_query_param)
        if (
            raw is not None
            and raw not in self.last_page_strings
            and ascii_int(raw, minimum=1, maximum=None) is None
        ):
            raise ApiError("page must be a positive integer", field=self.page_query_param)
        try:
            return super().paginate_queryset(queryset, request, view)
        except NotFound as exc:
            raise ApiError(
                f"page {raw} does not exist",
                field=self.page_query_param,
                status_code=status.HTTP_404_NOT_FOUND,
            ) from exc

    def _keyset_page(self, queryset: Any, request: Request) -> list[Any]:
        raw = request.query_params[self.cursor_query_param]
        block, _, row = raw.partition(".")
        parsed = (
            ascii_int(block, minimum=0, maximum=2**63 - 1),
            ascii_int(row, minimum=0, maximum=2**63 - 1),
        )
        if parsed[0] is None or parsed[1] is None:
            raise ApiError("cursor must be a cursor from a next link", field=self.cursor_query_param)
        self.request = request
        size = int(self.page_size or 50)
        # "At or below the block, but not at it with a higher id": the block bound is an index range (an OR of the
        # two conditions is not, and would filter its way down from the newest batch).
        rows = list(
            queryset.filter(created_block__lte=parsed[0]).exclude(created_block=parsed[0], id__gte=parsed[1])[
                : size + 1
            ]
        )
        if len(rows) > size:
            last = rows[size - 1]
            url = remove_query_param(request.build_absolute_uri(), self.page_query_param)
            self._cursor_next = replace_query_param(
                url, self.cursor_query_param, f"{last.created_block}.{last.id}"
            )
        if self._count is None:
            self._count = queryset.count()
        self.page = None
        return rows[:size]

    def get_paginated_response(self, data: Any) -> Response:
        if self.page is not None:
            return super().get_paginated_response(data)
        return Response({"count": self._count, "next": self._cursor_next, "previous": None, "results": data})

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super().get_schema_operation_parameters(view)
        if getattr(view, "keyset", False):
            parameters.append(
                {
                    "name": self.cursor_query_param,
                    "required": False,
                    "in": "query",
                    "description": "A cursor from a next link: the page after it, at the same cost at any depth.",
                    "schema": {"type": "string", "pattern": r"^[0-9]{1,18}\.[0-9]{1,18}$"},
                }
            )
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"] = {"type": "integer", "minimum": 1}
        return parameters


class ApiListView(ListAPIView):
    """A paginated list filtered by its ``filterset_class`` (a bad filter value: 400 naming it)."""

    pagination_class = Pagination
    filter_backends = [DjangoFilterBackend]


LIST_ERRORS = error_responses(400, 404)
_PAGING = ("page", "cursor")


def bytes32_param(value: str, *, field: str) -> str:
    """``value`` as lowercase 0x hex, or a 400 naming ``field``."""
    normalized = bytes32_normalize(value=value)
    if normalized is None:
        raise ApiError(f"{field} must be 0x followed by 64 hex digits", field=field)
    return normalized


def _bytes32_path(name: str, what: str) -> OpenApiParameter:
    return OpenApiParameter(
        name,
        str,
        OpenApiParameter.PATH,
        pattern=BYTES32_PATTERN,
        description=f"The {what}, 0x + 64 hex digits.",
    )


# --- Batches -----------------------------------------------------------------------------------


@extend_schema_view(get=extend_schema(responses={200: BatchOutputSerializer(many=True), **LIST_ERRORS}))
class BatchListApi(ApiListView):
    """Batches, newest first."""

    serializer_class = BatchOutputSerializer
    filterset_class = BatchFilter
    keyset = True

    def get_queryset(self) -> QuerySet[Batch]:
        return batch_list()

    def known_count(self, request: Request) -> int | None:
        """All batches, or those of one status, are counted by the writes; other filters are counted."""
        return batch_count_known(
            filters={k: v for k, v in request.query_params.items() if k not in _PAGING and v != ""}
        )


class BatchDetailApi(ApiView):
    """One batch, by its identifier (any hex case)."""

    @extend_schema(
        parameters=[_bytes32_path("identifier", "batch identifier (batchIdentifierHash)")],
        responses={200: BatchOutputSerializer, **error_responses(400, 404)},
    )
    def get(self, request: Request, identifier: str) -> Response:
        batch = batch_get(identifier=bytes32_param(identifier, field="identifier"))
        if batch is None:
            raise ApiError(
                "no batch with this identifier", field="identifier", status_code=status.HTTP_404_NOT_FOUND
            )
        return Response(BatchOutputSerializer(batch).data)


# --- Operators ---------------------------------------------------------------------------------


@extend_schema_view(get=extend_schema(responses={200: OperatorOutputSerializer(many=True), **LIST_ERRORS}))
class OperatorListApi(ApiListView):
    """Operators, biggest stake first."""

    serializer_class = OperatorOutputSerializer
    filterset_class = OperatorFilter

    def get_queryset(self) -> QuerySet[Operator]:
        return operator_list()

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "total_stake": operator_total_current_stake()}


class OperatorDetailApi(ApiView):
    """One operator, with its stake history, liveness and signature counts."""

    @extend_schema(
        parameters=[_bytes32_path("operator_id", "operatorId")],
        responses={200: OperatorDetailOutputSerializer, **error_responses(400, 404)},
    )
    def get(self, request: Request, operator_id: str) -> Response:
        operator = operator_get(operator_id=bytes32_param(operator_id, field="operator_id"))
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


# --- Alerts ------------------------------------------------------------------------------------


def _alert(alert_id: int) -> Alert:
    alert = alert_get(alert_id=alert_id)
    if alert is None:
        raise ApiError("no alert with this id", field="id", status_code=status.HTTP_404_NOT_FOUND)
    return alert


@extend_schema_view(get=extend_schema(responses={200: AlertOutputSerializer(many=True), **LIST_ERRORS}))
class AlertListApi(ApiListView):
    """Alerts, as ``alert_list`` orders them; filtered by state, kind, severity and since."""

    serializer_class = AlertOutputSerializer
    filterset_class = AlertFilter

    def get_queryset(self) -> QuerySet[Alert]:
        return alert_list()


class AlertDetailApi(ApiView):
    """One alert."""

    @extend_schema(responses={200: AlertOutputSerializer, **error_responses(404)})
    def get(self, request: Request, alert_id: int) -> Response:
        return Response(AlertOutputSerializer(_alert(alert_id)).data)


class AlertAcknowledgeApi(ApiView):
    """Acknowledge an alert (staff). Idempotent: the first acknowledgement is kept."""

    @extend_schema(request=None, responses={200: AlertOutputSerializer, **error_responses(404)})
    def post(self, request: Request, alert_id: int) -> Response:
        alert = alert_acknowledge(alert=_alert(alert_id), user=request.user.get_username())
        return Response(AlertOutputSerializer(alert).data)
