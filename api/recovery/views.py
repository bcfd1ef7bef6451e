"""Recovery API views: thin adapters over ``recovery.services.runs``.

The API's auth (``controlplane.auth``): starting a run is a write (a staff session with CSRF, or a staff user's
write token; a read token or a non-staff user: 403); following runs is a read. No credentials: 401.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import Prefetch, QuerySet
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from api.filters import RecoveryRunFilter
from api.recovery.serializers import (
    CatchupInputSerializer,
    RecoveryRunOutputSerializer,
    ReplayInputSerializer,
    ResponseInputSerializer,
)
from api.schema import error_responses
from api.views import ApiError, ApiListView, ApiView, bytes32_param
from controlplane.inputs import ascii_int
from recovery.models import RecoveryKind, RecoveryRun, RecoveryTask
from recovery.services.runs import ALL_PENDING, recovery_run_start


def recovery_run_queryset() -> QuerySet[RecoveryRun]:
    """Runs newest first, each with its tasks in one extra query."""
    return RecoveryRun.objects.prefetch_related(
        Prefetch("recoverytask_set", queryset=RecoveryTask.objects.order_by("id"))
    ).order_by("-created_at", "-id")


def _validated(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    """The validated body, or ApiError naming the first field at fault (unknown fields are errors too)."""
    data = request.data
    if not isinstance(data, Mapping):
        raise ApiError("the body must be a JSON object")
    known = set(serializer_class().fields)
    for name in data:
        if name not in known:
            raise ApiError(f"unknown field {name!r} (expected {', '.join(sorted(known))})", field=str(name))
    serializer = serializer_class(data=data)
    if not serializer.is_valid():
        field, messages = next(iter(serializer.errors.items()))
        message = messages[0] if isinstance(messages, list) and messages else messages
        if field == "non_field_errors":
            raise ApiError(str(message))
        raise ApiError(f"{field}: {message}", field=field)
    return dict(serializer.validated_data)


RUN_CREATED = {
    200: OpenApiResponse(RecoveryRunOutputSerializer, description="A dry run: the plan, nothing requested."),
    201: OpenApiResponse(RecoveryRunOutputSerializer, description="The run and the tasks it requested."),
    **error_responses(400),
}


def _run_response(run: RecoveryRun) -> Response:
    run = recovery_run_queryset().get(id=run.id)
    code = status.HTTP_200_OK if run.dry_run else status.HTTP_201_CREATED
    headers = {"Location": reverse("api:recovery:run-detail", kwargs={"run_id": run.id})}
    return Response(RecoveryRunOutputSerializer(run).data, status=code, headers=headers)


def _start(*, request: Request, kind: RecoveryKind, scope: str, dry_run: bool, field: str) -> Response:
    try:
        run = recovery_run_start(kind=kind, scope=scope, requested_by=request.user.username, dry_run=dry_run)
    except ValueError as exc:
        raise ApiError(str(exc), field=field) from exc
    return _run_response(run)


class ReplayCreateApi(ApiView):
    """Replay one pending batch (or all of them) to the aggregator (staff); ``dry_run`` only plans."""

    @extend_schema(request=ReplayInputSerializer, responses=RUN_CREATED)
    def post(self, request: Request) -> Response:
        data = _validated(ReplayInputSerializer, request)
        if data["all_pending"]:
            scope, field = ALL_PENDING, "all_pending"
        else:
            scope, field = bytes32_param(data["batch"].strip(), field="batch"), "batch"
        return _start(
            request=request, kind=RecoveryKind.REPLAY, scope=scope, dry_run=data["dry_run"], field=field
        )


class CatchupCreateApi(ApiView):
    """Ask an operator to catch up on the pending batches it has not signed (staff); ``dry_run`` only plans."""

    @extend_schema(request=CatchupInputSerializer, responses=RUN_CREATED)
    def post(self, request: Request) -> Response:
        data = _validated(CatchupInputSerializer, request)
        return _start(
            request=request,
            kind=RecoveryKind.CATCHUP,
            scope=bytes32_param(data["operator_id"].strip(), field="operator_id"),
            dry_run=data["dry_run"],
            field="operator_id",
        )


class ResponseCreateApi(ApiView):
    """Have the standby answer one pending batch on chain (staff); ``dry_run`` shows the struct and the simulation."""

    @extend_schema(request=ResponseInputSerializer, responses=RUN_CREATED)
    def post(self, request: Request) -> Response:
        data = _validated(ResponseInputSerializer, request)
        return _start(
            request=request,
            kind=RecoveryKind.RESPOND,
            scope=bytes32_param(data["batch"].strip(), field="batch"),
            dry_run=data["dry_run"],
            field="batch",
        )


@extend_schema_view(
    get=extend_schema(responses={200: RecoveryRunOutputSerializer(many=True), **error_responses(400, 404)})
)
class RunListApi(ApiListView):
    """Recovery runs, newest first."""

    serializer_class = RecoveryRunOutputSerializer
    filterset_class = RecoveryRunFilter

    def get_queryset(self) -> QuerySet[RecoveryRun]:
        return recovery_run_queryset()


class RunDetailApi(ApiView):
    """One recovery run with its tasks."""

    @extend_schema(
        parameters=[OpenApiParameter("run_id", int, OpenApiParameter.PATH, description="The run's id.")],
        responses={200: RecoveryRunOutputSerializer, **error_responses(404)},
    )
    def get(self, request: Request, run_id: str) -> Response:
        run_pk = ascii_int(run_id)
        run = recovery_run_queryset().filter(id=run_pk).first() if run_pk is not None else None
        if run is None:
            raise ApiError("no run with this id", field="id", status_code=status.HTTP_404_NOT_FOUND)
        return Response(RecoveryRunOutputSerializer(run).data)
