"""POST /api/v1/signatures — a thin adapter: size limit, parse, store, then acknowledge."""

from __future__ import annotations

import logging
import math

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from controlplane.clients import Rate, client_address, rate_check
from intake.parse import IntakeError, signed_response_parse
from intake.services import signature_submit

logger = logging.getLogger("intake")


def _error(exc: IntakeError) -> JsonResponse:
    response = JsonResponse(exc.as_json(), status=exc.status)
    if exc.retry_after is not None:
        response["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return response


@csrf_exempt  # operators are machines posting JSON, not browsers holding a session
@require_POST
def signature_create(request: HttpRequest) -> JsonResponse:
    source = client_address(request.META)
    wait = rate_check(key=f"intake:{source}", rate=Rate.parse(settings.INTAKE_RATE), fail_open=True)
    if wait is not None:
        return _error(
            IntakeError(f"more than {settings.INTAKE_RATE} posts from {source}", status=429, retry_after=wait)
        )
    limit = int(settings.INTAKE_MAX_BODY_BYTES)
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return _error(IntakeError(f"body is larger than {limit} bytes", status=413))
    body = request.read(limit + 1)
    if len(body) > limit:
        return _error(IntakeError(f"body is larger than {limit} bytes", status=413))
    try:
        response = signed_response_parse(body)
        result = signature_submit(response=response, source=source)
    except IntakeError as exc:
        return _error(exc)
    except DatabaseError as exc:
        # Nothing was acknowledged, so nothing is lost: tell the operator to retry rather than fail opaquely.
        logger.error("intake storage unavailable: %s", exc)
        return _error(IntakeError("storage temporarily unavailable; retry", status=503, retry_after=1))
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
