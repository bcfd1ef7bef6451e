"""The shape of an alert rule: a small function from the current state to the conditions that hold now."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from alerts.models import Alert, AlertKind, AlertSeverity
from alerts.observe import RuleContext
from progress.quorum import stake_percent

# At most this many subjects of one kind per evaluation: a flood stays bounded and the oldest come first.
SUBJECT_LIMIT = 1000


@dataclass(frozen=True)
class Condition:
    """Something true now that deserves an alert; (kind, subject) names it across evaluations."""

    kind: AlertKind
    subject: str
    severity: AlertSeverity
    summary: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (str(self.kind), self.subject)


# A rule returns the conditions of its kind that hold now, or None when it cannot tell this time (the node does
# not answer, say): then its open alerts are neither resolved nor re-opened.
Conditions = Callable[[RuleContext], list[Condition] | None]
Resolution = Callable[[Alert, RuleContext], str]


@dataclass(frozen=True)
class Rule:
    kind: AlertKind
    conditions: Conditions
    # Why an open alert's cause is gone, read at resolution time ("batch verified on chain at block 812").
    resolution: Resolution


def short(value: str) -> str:
    """A 0x-hex identifier cut for a summary line; the full one is in the subject and details."""
    return value[:10] + "…" if len(value) > 12 else value


def percent(part: Decimal, total: Decimal) -> float:
    return round(stake_percent(part=part, total=total), 2)
