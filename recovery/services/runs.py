"""Staff-requested recovery runs: plan what would be sent, audit the request, and request the tasks.

A run is one RecoveryRun row (who, when, what was planned, what came of it); its tasks point back at it, so its
progress is visible. A dry run writes the row and requests nothing. A batch already verified on chain is never
replayed: it is listed as skipped, with the reason.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from controlplane.changes import change_announce, recovery_run_recorded
from intake.models import Signature, SignatureStatus
from ledger.models import Batch, BatchStatus, Operator
from ledger.selectors import bytes32_normalize
from recovery.models import RecoveryKind, RecoveryRun, RecoveryTask
from recovery.services.forwarding import signature_payload
from recovery.services.tasks import recovery_task_request

ALL_PENDING = "all-pending"


def _bytes32(*, value: str, name: str) -> str:
    normalized = bytes32_normalize(value=value.strip())
    if normalized is None:
        raise ValueError(f"{name} must be {ALL_PENDING!r} or 0x followed by 64 hex digits, not {value!r}")
    return normalized


def _batch_entry(batch: Batch, signatures: list[Signature]) -> dict[str, Any]:
    return {
        "identifier": batch.identifier,
        "status": batch.status,
        # The task announcement the replay sends first, then every verified signature.
        "announce": {
            "batchMerkleRoot": batch.merkle_root,
            "senderAddress": batch.sender,
            "taskCreatedBlock": batch.task_created_block,
        },
        "verified_signatures": len(signatures),
        "signatures": [signature_payload(signature) for signature in signatures],
    }


def _skip_reason(batch: Batch) -> str:
    if batch.status == BatchStatus.VERIFIED:
        block = f" at block {batch.verified_block}" if batch.verified_block is not None else ""
        return f"already verified on chain{block}: never replayed"
    if batch.status == BatchStatus.ORPHANED:
        return "orphaned by a reorg: there is no task to replay"
    return f"batch is {batch.status}: not replayable"


def replay_plan(*, scope: str) -> dict[str, Any]:
    """What a replay of ``scope`` (a batch identifier or "all-pending") would send, and what it would skip."""
    if scope.strip() == ALL_PENDING:
        batches = list(Batch.objects.filter(status=BatchStatus.PENDING).order_by("created_block", "id"))
    else:
        identifier = _bytes32(value=scope, name="the replay scope")
        batch = Batch.objects.filter(identifier=identifier).first()
        if batch is None:
            raise ValueError(f"no batch with identifier {identifier}")
        batches = [batch]
    plan: dict[str, Any] = {"batches": [], "skipped": []}
    replayable = [batch for batch in batches if batch.status == BatchStatus.PENDING]
    signatures: dict[str, list[Signature]] = {batch.identifier: [] for batch in replayable}
    for signature in Signature.objects.filter(
        batch_identifier__in=list(signatures), status=SignatureStatus.VERIFIED
    ).order_by("id"):
        signatures[signature.batch_identifier].append(signature)
    for batch in batches:
        if batch.status == BatchStatus.PENDING:
            plan["batches"].append(_batch_entry(batch, signatures[batch.identifier]))
        else:
            plan["skipped"].append({"identifier": batch.identifier, "reason": _skip_reason(batch)})
    return plan


def catchup_plan(*, operator_id: str) -> dict[str, Any]:
    """The batches an operator would be asked to process (those it has not signed), and where it is reached."""
    from recovery.services.catchup import operator_catchup_batches

    normalized = bytes32_normalize(value=operator_id.strip())
    if normalized is None:
        raise ValueError(f"operator_id must be 0x followed by 64 hex digits, not {operator_id!r}")
    operator = Operator.objects.filter(operator_id=normalized).first()
    if operator is None:
        raise ValueError(f"no operator with operatorId {normalized}")
    if not operator.registered:
        raise ValueError(f"operator {normalized} is deregistered: it has nothing to catch up")
    return {
        "operator_id": operator.operator_id,
        "socket": operator.socket,
        "batches": [
            {
                "identifier": batch.identifier,
                "batchMerkleRoot": batch.merkle_root,
                "senderAddress": batch.sender,
                "batchDataPointer": batch.data_pointer,
            }
            for batch in operator_catchup_batches(operator_id=operator.operator_id)
        ],
    }


def response_plan(*, scope: str) -> dict[str, Any]:
    """The standby's respondToTaskV2 for one batch: the struct it would send and what an eth_call of it gives."""
    from chain.client import ChainClient
    from chain.errors import RpcError
    from recovery.services.standby import NotAnswerable, response_build, response_simulate, standby_config

    identifier = _bytes32(value=scope, name="batch")
    batch = Batch.objects.filter(identifier=identifier).first()
    if batch is None:
        raise ValueError(f"no batch with identifier {identifier}")
    plan: dict[str, Any] = {"identifier": batch.identifier, "status": batch.status}
    if batch.status != BatchStatus.PENDING:
        return {**plan, "skipped": _skip_reason(batch).replace("replayed", "answered")}
    standby, missing = standby_config()
    if standby is None:
        raise ValueError(missing)
    plan["sender"] = standby.sender
    client = ChainClient(standby.rpc_url, max_attempts=3)
    try:
        response = response_build(batch=batch, client=client, standby=standby)
        simulated = response_simulate(plan=response, client=client, standby=standby)
    except NotAnswerable as exc:
        return {**plan, "skipped": f"not answerable: {exc}"}
    except RpcError as exc:
        raise ValueError(f"the chain could not be asked: {exc}") from None
    finally:
        client.close()
    from chain.contracts import revert_decode

    plan["response"] = response.as_json()
    plan["simulation"] = (
        {"reverts": True, "revert": revert_decode(simulated.data).text}
        if simulated.reverted
        else {"reverts": False}
    )
    return plan


def _response_outcome(*, run: RecoveryRun, plan: dict[str, Any], requested_by: str, dry_run: bool) -> str:
    if "skipped" in plan:
        return f"nothing to do: {plan['skipped']}"
    simulation = plan["simulation"]
    verdict = (
        f"the simulation reverts: {simulation['revert']}"
        if simulation["reverts"]
        else "the simulation succeeds"
    )
    share = plan["response"]["signedPercentage"]
    if dry_run:
        return f"dry run: the standby would answer with {share}% of the stake signed; {verdict}"
    if simulation["reverts"]:
        return f"not sent: {verdict}"
    created = _request(
        run=run, kind=RecoveryKind.RESPOND, subject=plan["identifier"], requested_by=requested_by
    )
    already_text = "" if created else " (a response task was already open)"
    return f"standby response requested ({share}% of the stake signed){already_text}"


def _count(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _request(*, run: RecoveryRun, kind: RecoveryKind, subject: str, requested_by: str) -> bool:
    """Request one task for the run; True when it is new. An open task requested by no run joins this one."""
    task, created = recovery_task_request(
        kind=kind, subject=subject, requested_by=requested_by, reason=f"run {run.id}", run=run, urgent=True
    )
    if not created:
        RecoveryTask.objects.filter(id=task.id, run__isnull=True).update(run=run)
    return created


def _replay_outcome(*, run: RecoveryRun, plan: dict[str, Any], requested_by: str, dry_run: bool) -> str:
    planned = [entry["identifier"] for entry in plan["batches"]]
    skipped = len(plan["skipped"])
    tail = f"; {skipped} skipped" if skipped else ""
    if not planned:
        return (
            f"nothing to do: {plan['skipped'][0]['reason']}" if skipped else "nothing to do: no pending batch"
        )
    if dry_run:
        return f"dry run: {_count(len(planned), 'batch', 'batches')} would be replayed{tail}"
    created = sum(
        _request(run=run, kind=RecoveryKind.REPLAY, subject=identifier, requested_by=requested_by)
        for identifier in planned
    )
    already = len(planned) - created
    already_text = f" ({already} already open)" if already else ""
    return f"{_count(len(planned), 'replay task', 'replay tasks')} requested{already_text}{tail}"


def _catchup_outcome(*, run: RecoveryRun, plan: dict[str, Any], requested_by: str, dry_run: bool) -> str:
    count = len(plan["batches"])
    if not count:
        return "nothing to do: the operator has signed every pending batch"
    if dry_run:
        return f"dry run: the operator would be asked to catch up on {_count(count, 'batch', 'batches')}"
    created = _request(
        run=run, kind=RecoveryKind.CATCHUP, subject=plan["operator_id"], requested_by=requested_by
    )
    already_text = "" if created else " (a catch-up task was already open)"
    return f"catch-up task requested for {_count(count, 'batch', 'batches')}{already_text}"


def recovery_run_start(*, kind: RecoveryKind, scope: str, requested_by: str, dry_run: bool) -> RecoveryRun:
    """Plan, audit and (unless a dry run) request the tasks, in one transaction. ValueError on a bad scope."""
    if kind == RecoveryKind.REPLAY:
        plan = replay_plan(scope=scope)
        normalized = ALL_PENDING if scope.strip() == ALL_PENDING else _bytes32(value=scope, name="scope")
    elif kind == RecoveryKind.CATCHUP:
        plan = catchup_plan(operator_id=scope)
        normalized = plan["operator_id"]
    elif kind == RecoveryKind.RESPOND:
        plan = response_plan(scope=scope)
        normalized = plan["identifier"]
    else:
        raise ValueError(f"a run is a replay, a catch-up or a standby response, not {kind!r}")
    with transaction.atomic():
        run = RecoveryRun.objects.create(
            kind=kind, scope=normalized, requested_by=requested_by[:150], dry_run=dry_run, plan=plan
        )
        if kind == RecoveryKind.REPLAY:
            run.outcome = _replay_outcome(run=run, plan=plan, requested_by=requested_by, dry_run=dry_run)
        elif kind == RecoveryKind.RESPOND:
            run.outcome = _response_outcome(run=run, plan=plan, requested_by=requested_by, dry_run=dry_run)
        else:
            run.outcome = _catchup_outcome(run=run, plan=plan, requested_by=requested_by, dry_run=dry_run)
        run.save(update_fields=["outcome"])
        change_announce(recovery_run_recorded, run=run)
    return run
