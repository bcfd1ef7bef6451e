"""POST /api/v1/signatures — a thin adapter: size limit, parse, store, then acknowledge."""

from __future__ import annotations

import math

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from controlplane.clients import client_address
from intake.parse import IntakeError, SignedResponse, signed_response_parse
from intake.services import signature_receive


def _error(exc: IntakeError) -> JsonResponse:
    response = JsonResponse(exc.as_json(), status=exc.status)
    if exc.retry_after is not None:
        response["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return response


@csrf_exempt  # operators are machines posting JSON, not browsers holding a session
@require_POST
def signature_create(request: HttpRequest) -> JsonResponse:
    def body() -> SignedResponse:
        limit = int(settings.INTAKE_MAX_BODY_BYTES)
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        raw = request.read(limit + 1) if declared <= limit else b""
        if declared > limit or len(raw) > limit:
            raise IntakeError(f"body is larger than {limit} bytes", status=413)
        return signed_response_parse(raw)

    try:
        response, result = signature_receive(source=client_address(request.META), parse=body)
    except IntakeError as exc:
        return _error(exc)
    return JsonResponse(
        {
            "status": result.status,
            "signatureId": result.signature_id,
            "signatureStatus": result.signature_status,
            "conflicting": result.conflicting,
            "batchIdentifierHash": response.batch_identifier,
            "operatorId": response.operator_id,
        },
        status=202,
    )
