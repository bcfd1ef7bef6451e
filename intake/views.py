"""POST /api/v1/signatures — a thin adapter: size limit, parse, store, then acknowledge.

``signature_post`` and ``signature_answer_for`` are the whole endpoint minus the HTTP framework and the store: the
Django view below stores each post itself, the ASGI fast path (``intake.asgi``, what the web server runs) hands it to
the process's committers (``intake.groups``); both answer alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from controlplane.clients import client_address
from intake.parse import IntakeError, SignedResponse, signed_response_parse
from intake.services import Received, signature_receive


@dataclass(frozen=True)
class IntakeAnswer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def signature_post(*, meta: Mapping[str, object], raw: bytes) -> tuple[str, Callable[[], SignedResponse]]:
    """What the intake takes of one posted body: its source address and its parser (413 over the body limit)."""
    limit = int(settings.INTAKE_MAX_BODY_BYTES)
    try:
        declared = int(str(meta.get("CONTENT_LENGTH") or 0))
    except ValueError:
        declared = 0

    def parse() -> SignedResponse:
        if declared > limit or len(raw) > limit:
            raise IntakeError(f"body is larger than {limit} bytes", status=413)
        return signed_response_parse(raw)

    return client_address(meta), parse


def signature_answer_for(outcome: Received) -> IntakeAnswer:
    """202 once stored, else the refusal (``{"error", "field"}``, Retry-After)."""
    if isinstance(outcome, IntakeError):
        retry_after = outcome.retry_after
        headers = {} if retry_after is None else {"Retry-After": str(max(1, math.ceil(retry_after)))}
        return IntakeAnswer(status=outcome.status, body=outcome.as_json(), headers=headers)
    response, result = outcome
    return IntakeAnswer(
        status=202,
        body={
            "status": result.status,
            "signatureId": result.signature_id,
            "signatureStatus": result.signature_status,
            "conflicting": result.conflicting,
            "batchIdentifierHash": response.batch_identifier,
            "operatorId": response.operator_id,
        },
    )


def signature_answer(*, meta: Mapping[str, object], raw: bytes) -> IntakeAnswer:
    """The answer to one posted body, stored by this thread (the fast path groups posts, see intake.groups)."""
    source, parse = signature_post(meta=meta, raw=raw)
    try:
        outcome: Received = signature_receive(source=source, parse=parse)
    except IntakeError as exc:
        outcome = exc
    return signature_answer_for(outcome)


@csrf_exempt  # operators are machines posting JSON, not browsers holding a session
@require_POST
def signature_create(request: HttpRequest) -> JsonResponse:
    limit = int(settings.INTAKE_MAX_BODY_BYTES)
    answer = signature_answer(meta=request.META, raw=request.read(limit + 1))
    response = JsonResponse(answer.body, status=answer.status)
    for name, value in answer.headers.items():
        response[name] = value
    return response
