"""Rules about answering on chain: the standby answered, the responder's balance runs low, a batch is about to
leave its window with a quorum and no response."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Max

from alerts.conditions import SUBJECT_LIMIT, Condition, Rule, short
from alerts.models import Alert, AlertKind, AlertSeverity
from alerts.observe import RuleContext
from chain.client import ChainClient
from chain.contracts import selector
from chain.errors import RpcError
from chain.transactions import balance_get, call_simulate
from ledger.models import BatchStatus, IngestCursor
from progress.models import BatchProgress
from recovery.models import RecoveryKind, RecoveryStatus, RecoveryTask, ResponseTransaction

# The standby's answers are told for this long after each one.
ANSWERED_NOTICE = timedelta(hours=1)
# Gas of one respondToTaskV2 before any has been paid for here (a pairing check and a few storage reads).
RESPONSE_GAS_GUESS = 500_000


def standby_answered(ctx: RuleContext) -> list[Condition]:
    tasks = RecoveryTask.objects.filter(
        kind=RecoveryKind.RESPOND,
        status=RecoveryStatus.DONE,
        result__answered_by="standby",
        finished_at__gte=ctx.now - ANSWERED_NOTICE,
    ).order_by("-finished_at")[:SUBJECT_LIMIT]
    return [
        Condition(
            kind=AlertKind.STANDBY_ANSWERED,
            subject=task.subject,
            severity=AlertSeverity.WARNING,
            summary=(
                f"the standby answered batch {short(task.subject)} on chain "
                f"(tx {short(str(task.result.get('tx_hash')))}): the aggregator could not"
            ),
            details={
                "batch_identifier": task.subject,
                "task_id": task.id,
                "tx_hash": task.result.get("tx_hash"),
                "block": task.result.get("block"),
                "reason": task.reason,
            },
        )
        for task in tasks
    ]


def _responder(client: ChainClient) -> str | None:
    """The address that may respond: the service manager's aggregator (the standby signs as it too)."""
    if not settings.SERVICE_MANAGER_ADDRESS:
        return None
    answer = call_simulate(
        client,
        sender=None,
        to=str(settings.SERVICE_MANAGER_ADDRESS),
        data="0x" + selector("alignedAggregator()").hex(),
    )
    if answer.reverted or len(answer.data) != 66:
        return None
    return "0x" + answer.data[-40:]


def responder_balance_low(ctx: RuleContext) -> list[Condition]:
    chain = ctx.chain()
    if chain is None or not chain.reachable:
        return []
    client = ChainClient(
        chain.url, timeout=float(settings.ALERT_CHAIN_TIMEOUT), max_attempts=2, backoff_base=0.2
    )
    try:
        address = _responder(client)
        if address is None:
            return []
        balance = balance_get(client, address)
        gas_price = int(client.call("eth_gasPrice", []), 16)
    except RpcError:
        return []
    finally:
        client.close()
    paid = ResponseTransaction.objects.filter(fee_paid__isnull=False).aggregate(m=Max("fee_paid"))["m"]
    per_response = max(Decimal(paid or 0), Decimal(RESPONSE_GAS_GUESS * gas_price))
    responses = int(settings.ALERT_RESPONDER_BALANCE_RESPONSES)
    needed = per_response * responses
    if Decimal(balance) >= needed:
        return []
    return [
        Condition(
            kind=AlertKind.RESPONDER_BALANCE_LOW,
            subject=address,
            severity=AlertSeverity.WARNING,
            summary=(
                f"the aggregator's account {short(address)} (the standby's too) holds "
                f"{Decimal(balance) / 10**18:.6f} ETH, less than {responses} responses cost ({needed / 10**18:.6f} ETH)"
            ),
            details={
                "address": address,
                "balance_wei": str(balance),
                "needed_wei": str(needed),
                "responses": responses,
            },
        )
    ]


def window_closing(ctx: RuleContext) -> list[Condition]:
    head = IngestCursor.objects.aggregate(head=Max("block_number"))["head"]
    if head is None:
        return []
    window, margin = int(settings.RESPONSE_WINDOW_BLOCKS), int(settings.ALERT_WINDOW_CLOSING_BLOCKS)
    rows = (
        BatchProgress.objects.filter(
            batch__status=BatchStatus.PENDING,
            quorum_reached_at__isnull=False,
            batch__created_block__lte=head - max(window - margin, 0),
            batch__created_block__gt=head - window,
        )
        .select_related("batch")
        .order_by("batch__created_block")[:SUBJECT_LIMIT]
    )
    return [
        Condition(
            kind=AlertKind.WINDOW_CLOSING,
            subject=progress.batch.identifier,
            severity=AlertSeverity.CRITICAL,
            summary=(
                f"batch {short(progress.batch.identifier)} holds a quorum but no response, and leaves its window in "
                f"{progress.batch.created_block + window - head} blocks"
                + ("" if settings.STANDBY_RESPONDER else "; the standby responder is off (STANDBY_RESPONDER)")
            ),
            details={
                "batch_identifier": progress.batch.identifier,
                "created_block": progress.batch.created_block,
                "head": head,
                "window_blocks": window,
            },
        )
        for progress in rows
    ]


def standby_resolution(alert: Alert, ctx: RuleContext) -> str:
    if alert.kind == AlertKind.RESPONDER_BALANCE_LOW:
        return "the responder's balance covers the responses again"
    if alert.kind == AlertKind.STANDBY_ANSWERED:
        return "told; the batch is verified"
    return "the batch was answered, or left its window"


STANDBY_RULES: tuple[Rule, ...] = (
    Rule(AlertKind.STANDBY_ANSWERED, standby_answered, standby_resolution),
    Rule(AlertKind.RESPONDER_BALANCE_LOW, responder_balance_low, standby_resolution),
    Rule(AlertKind.WINDOW_CLOSING, window_closing, standby_resolution),
)
