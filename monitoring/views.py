"""Server-rendered pages: thin adapters over selectors."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from monitoring.models import Batch, Operator
from monitoring.selectors import (
    batch_list,
    ingest_status,
    operator_list,
    operator_stake_share,
    operator_total_current_stake,
)

HOME_BATCHES = 20
WEI_PER_ETH = Decimal(10**18)


def short_hex(value: str, *, keep: int = 6) -> str:
    """``0x1234ab…cdef01`` — enough to tell rows apart; the full value goes in the title attribute."""
    if len(value) <= 2 + 2 * keep + 1:
        return value
    return f"{value[: 2 + keep]}…{value[-keep:]}"


def eth_display(wei: Decimal) -> str:
    return f"{(Decimal(wei) / WEI_PER_ETH).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"


@dataclass(frozen=True)
class BatchRow:
    batch: Batch
    short_identifier: str


@dataclass(frozen=True)
class OperatorRow:
    operator: Operator
    short_operator_id: str
    stake_eth: str
    share_percent: str | None


def home(request: HttpRequest) -> HttpResponse:
    total = operator_total_current_stake()
    batches = [
        BatchRow(batch=b, short_identifier=short_hex(b.identifier)) for b in batch_list()[:HOME_BATCHES]
    ]
    operators = []
    for operator in operator_list():
        share = operator_stake_share(operator=operator, total=total)
        operators.append(
            OperatorRow(
                operator=operator,
                short_operator_id=short_hex(operator.operator_id),
                stake_eth=eth_display(operator.current_stake),
                share_percent=None if share is None else f"{share * 100:.2f}",
            )
        )
    status = ingest_status()
    return render(
        request,
        "home.html",
        {
            "batches": batches,
            "operators": operators,
            "total_stake_eth": eth_display(total),
            "cursors": status.cursors,
            "last_incident": status.last_incident,
            "refresh_seconds": 5,
        },
    )
