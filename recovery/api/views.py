"""Recovery API views (staff only): thin adapters over ``recovery.services.runs``.

Authentication: ``Authorization: Token <key>`` (tokens are created and revoked by staff in the admin) or the
admin session (CSRF enforced). No credentials: 401; an authenticated non-staff user: 403.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db.models import Prefetch, QuerySet
from django.urls import reverse
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response

from monitoring.api.views import ApiError, ApiView, Pagination
from monitoring.selectors import bytes32_normalize
from recovery.api.serializers import (
    CatchupInputSerializer,
    RecoveryRunOutputSerializer,
    ReplayInputSerializer,
)
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


class RecoveryApiView(ApiView):
    # Token first: a request without credentials is answered 401 with "WWW-Authenticate: Token".
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [IsAdminUser]


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


class ReplayCreateApi(RecoveryApiView):
    def post(self, request: Request) -> Response:
        data = _validated(ReplayInputSerializer, request)
        if data["all_pending"]:
            scope, field = ALL_PENDING, "all_pending"
        else:
            normalized = bytes32_normalize(value=data["batch"].strip())
            if normalized is None:
                raise ApiError("batch must be 0x followed by 64 hex digits", field="batch")
            scope, field = normalized, "batch"
        return _start(
            request=request, kind=RecoveryKind.REPLAY, scope=scope, dry_run=data["dry_run"], field=field
        )


class CatchupCreateApi(RecoveryApiView):
    def post(self, request: Request) -> Response:
        data = _validated(CatchupInputSerializer, request)
        operator_id = bytes32_normalize(value=data["operator_id"].strip())
        if operator_id is None:
            raise ApiError("operator_id must be 0x followed by 64 hex digits", field="operator_id")
        return _start(
            request=request,
            kind=RecoveryKind.CATCHUP,
            scope=operator_id,
            dry_run=data["dry_run"],
            field="operator_id",
        )


class RunListApi(RecoveryApiView):
    def get(self, request: Request) -> Response:
        paginator = Pagination()
        page = paginator.paginate_queryset(recovery_run_queryset(), request, view=self)
        return paginator.get_paginated_response(RecoveryRunOutputSerializer(page, many=True).data)


class RunDetailApi(RecoveryApiView):
    def get(self, request: Request, run_id: str) -> Response:
        run = recovery_run_queryset().filter(id=int(run_id)).first() if run_id.isdigit() else None
        if run is None:
            raise ApiError("no run with this id", field="id", status_code=status.HTTP_404_NOT_FOUND)
        return Response(RecoveryRunOutputSerializer(run).data)
