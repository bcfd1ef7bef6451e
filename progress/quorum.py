"""The quorum rule: a share of the stake at the task block, compared in integers as the service manager does."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings


def quorum_threshold() -> int:
    """Percent of the stake a batch needs (``QUORUM_THRESHOLD_PERCENTAGE``)."""
    return int(settings.QUORUM_THRESHOLD_PERCENTAGE)


def stake_holds_quorum(*, signed: Decimal | int, total: Decimal | int, threshold: int) -> bool:
    """Whether ``signed`` is at least ``threshold`` percent of ``total``; no stake at all holds none.

    ``signed * 100 >= total * threshold``, in integers: the check the service manager's ``respondToTaskV2`` makes on
    chain, so 66.99% never rounds up here to a quorum that the chain would refuse.
    """
    return total > 0 and signed * 100 >= total * threshold


def stake_percent(*, part: Decimal | int, total: Decimal | int) -> float:
    """``part`` as a percentage of ``total``, 0.0 when there is no stake."""
    return float(Decimal(part) * 100 / Decimal(total)) if total > 0 else 0.0
