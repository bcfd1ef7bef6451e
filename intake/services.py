"""Intake services: store a signed response durably (then it may be acknowledged), match and expire waiting ones."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from urllib.parse import urlsplit

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import Q
from django.utils import timezone

from controlplane.changes import change_announce, signature_accepted
from controlplane.clients import Rate, rate_check_many
from intake.models import BatchRefusal, Signature, SignatureStatus
from intake.parse import IntakeError, SignedResponse
from ledger.models import Batch
from ledger.selectors import operator_stake_at_block, stake_at_block_sql
from progress.models import BatchProgressChange

logger = logging.getLogger("intake")


@dataclass(frozen=True)
class SubmitResult:
    status: str  # "accepted" or "duplicate"
    signature_id: int
    signature_status: str
    conflicting: bool


def _socket_address(socket: str) -> str:
    """The IP address in an operator's socket (``http://203.0.113.5:9000``), or "" for a name or garbage."""
    host = urlsplit(socket if "://" in socket else f"//{socket}").hostname or ""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return ""


def _hex32(value: int) -> str:
    return "0x" + value.to_bytes(32, "big").hex()


# Unverified signatures per (batch, operator) are bounded twice: INTAKE_MAX_UNVERIFIED in all, and one per source
# address, so a forger (however fast it posts) holds at most one place per address. The operator itself, posting
# from the address of its registered socket, is not bound (only INTAKE_RATE limits an address): many forgers
# cannot crowd it out. Anyone else over the bound gets 429 with Retry-After until verification settles what waits.
# Submissions for one (batch, operator) are serialised by a transaction-scoped advisory lock, so the bound on
# unverified ones holds under concurrency; honest submissions of different operators never wait for each other.
# A group of posts (what arrived together, see intake.groups) is stored in one transaction: the lookup takes every
# pair's lock, in the pairs' order so that two groups never wait on each other crosswise, and it is a statement
# before the inserts: a statement sees what committed before it began, so the counts must come from a later one.
_LOOKUP = f"""
SELECT i.n, o.registered, b.task_created_block, o.socket,
    {stake_at_block_sql(operator="o.operator_id", block="b.task_created_block")}
FROM (
    SELECT n, batch, operator, pg_advisory_xact_lock(hashtextextended(batch || operator, 0))::text AS locked
    FROM (
        SELECT * FROM unnest(%(batches)s::text[], %(operators)s::text[]) WITH ORDINALITY AS u(batch, operator, n)
        ORDER BY batch || operator OFFSET 0
    ) sorted
) i
LEFT JOIN monitoring_operator o ON o.operator_id = i.operator
LEFT JOIN monitoring_batch b ON b.identifier = i.batch
"""

# One round of a group (at most one post per pair), in one statement: each post's identical earlier submission
# (a duplicate), how many of its pair are unverified, the inserts of those neither duplicate nor over the bound,
# and the verifiers' wake-up per batch that gained a pending one. A later round sees the earlier rounds' rows.
_INSERT = """
WITH i AS (
    SELECT * FROM unnest(%(batches)s::text[], %(operators)s::text[], %(roots)s::text[], %(senders)s::text[],
        %(xs)s::text[], %(ys)s::text[], %(statuses)s::text[], %(sources)s::text[], %(owns)s::boolean[])
        WITH ORDINALITY AS u(batch, operator, root, sender, x, y, status, source, own, n)
), same AS (
    SELECT i.n, s.id, s.status, s.conflicting FROM i JOIN monitoring_signature s
        ON s.batch_identifier = i.batch AND s.operator_id = i.operator AND s.signature_x = i.x AND s.signature_y = i.y
), unverified AS (
    SELECT i.n, count(s.id) AS total, count(s.id) FILTER (WHERE s.source = i.source) AS from_source
    FROM i LEFT JOIN monitoring_signature s ON s.batch_identifier = i.batch AND s.operator_id = i.operator
        AND s.status IN ('pending', 'waiting')
    GROUP BY i.n
), inserted AS (
    INSERT INTO monitoring_signature (batch_identifier, batch_merkle_root, sender_address, operator_id,
        signature_x, signature_y, status, status_reason, conflicting, source, received_at)
    SELECT i.batch, i.root, i.sender, i.operator, i.x, i.y, i.status, '', false, i.source, now()
    FROM i JOIN unverified u ON u.n = i.n
    WHERE NOT EXISTS (SELECT 1 FROM same WHERE same.n = i.n)
        AND (i.own OR (u.from_source = 0 AND u.total < %(bound)s))
    ORDER BY i.n
    ON CONFLICT (batch_identifier, operator_id, signature_x, signature_y) DO NOTHING
    RETURNING id, batch_identifier, operator_id, status
), notified AS (
    SELECT pg_notify(%(channel)s, batch)::text
    FROM (SELECT DISTINCT batch_identifier AS batch FROM inserted WHERE status = 'pending') pending
)
SELECT i.n, inserted.id, same.id, same.status, same.conflicting, u.total, u.from_source,
    (SELECT count(*) FROM notified)
FROM i LEFT JOIN inserted ON inserted.batch_identifier = i.batch AND inserted.operator_id = i.operator
    LEFT JOIN same ON same.n = i.n LEFT JOIN unverified u ON u.n = i.n
ORDER BY i.n
"""

# Seconds a submitter over the bound is told to wait: about a verifier round.
UNVERIFIED_RETRY_AFTER = 2

# Verifiers LISTEN on this channel; the notification is delivered only if the transaction commits.
NOTIFY_CHANNEL = "signatures_pending"

# What a post came to: stored (or found stored), or refused with nothing stored.
Received = tuple[SignedResponse, SubmitResult] | IntakeError


def signature_receive(
    *, source: str, parse: Callable[[], SignedResponse]
) -> tuple[SignedResponse, SubmitResult]:
    """One post through ``signatures_receive``; raises its IntakeError when nothing was stored."""
    (outcome,) = signatures_receive(posts=[(source, parse)])
    if isinstance(outcome, IntakeError):
        raise outcome
    return outcome


def signatures_receive(*, posts: Sequence[tuple[str, Callable[[], SignedResponse]]]) -> list[Received]:
    """The intake of every wire (HTTP JSON, net/rpc gob), for posts that arrived together, each a (source address,
    ``parse``): the per-address rate, then ``parse``, then one store for all. One outcome per post, in order.

    An IntakeError means nothing was stored: 429 over the rate, what ``parse`` or the checks refuse, 503 when
    Postgres can't take it now. The adapters only translate each outcome into their wire's answer.
    """
    rate = Rate.parse(settings.INTAKE_RATE)
    waits = rate_check_many(keys=[f"intake:{source}" for source, _ in posts], rate=rate, fail_open=True)
    outcomes: list[Received | None] = [None] * len(posts)
    parsed: list[tuple[int, SignedResponse, str]] = []
    for index, ((source, parse), wait) in enumerate(zip(posts, waits, strict=True)):
        if wait is not None:
            outcomes[index] = IntakeError(
                f"more than {settings.INTAKE_RATE} posts from {source}", status=429, retry_after=wait
            )
            continue
        try:
            parsed.append((index, parse(), source))
        except IntakeError as exc:
            outcomes[index] = exc
    if parsed:
        try:
            stored = signatures_submit(posts=[(response, source) for _, response, source in parsed])
        except DatabaseError as exc:
            # Nothing was acknowledged, so nothing is lost: the senders are told to retry, not failed opaquely.
            logger.error("intake storage unavailable: %s", exc)
            stored = [
                IntakeError("storage temporarily unavailable; retry", status=503, retry_after=1)
                for _ in parsed
            ]
        for (index, response, _), result in zip(parsed, stored, strict=True):
            outcomes[index] = result if isinstance(result, IntakeError) else (response, result)
    return [outcome for outcome in outcomes if outcome is not None]


def signature_submit(*, response: SignedResponse, source: str = "") -> SubmitResult:
    """One signature through ``signatures_submit``; raises its IntakeError (403 for an unknown operator)."""
    (result,) = signatures_submit(posts=[(response, source)])
    if isinstance(result, IntakeError):
        raise result
    return result


def signatures_submit(*, posts: Sequence[tuple[SignedResponse, str]]) -> list[SubmitResult | IntakeError]:
    """Check each (response, source address)'s operator, store what may be stored, commit once for all.

    Returns only after the rows are committed: from then on they cannot be lost, so the caller may acknowledge.
    One outcome per post, in order: a SubmitResult, or the IntakeError that says why nothing was stored for it.
    """
    outcomes: list[SubmitResult | IntakeError | None] = [None] * len(posts)
    pairs = list(dict.fromkeys((response.batch_identifier, response.operator_id) for response, _ in posts))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_LOOKUP, {"batches": [b for b, _ in pairs], "operators": [o for _, o in pairs]})
        found = {pairs[int(n) - 1]: row for n, *row in cursor.fetchall()}
        # Round r holds the r-th post of each pair, so that every statement counts each pair once.
        rounds: list[list[tuple[int, SignedResponse, str, str, bool, Decimal]]] = []
        seen: dict[tuple[str, str], int] = {}
        for index, (response, source) in enumerate(posts):
            pair = (response.batch_identifier, response.operator_id)
            registered, task_created_block, socket, stake = found[pair]
            if registered is None:  # no such operator (the LEFT JOIN found none)
                outcomes[index] = IntakeError(
                    "operatorId is not a registered operator", field="operatorId", status=403
                )
                continue
            if task_created_block is not None:
                if not stake or stake <= 0:
                    outcomes[index] = IntakeError(
                        "operatorId had no stake at the batch's taskCreatedBlock",
                        field="operatorId",
                        status=403,
                    )
                    continue
                status = SignatureStatus.PENDING
            elif not registered:
                outcomes[index] = IntakeError(
                    "operatorId is not a registered operator", field="operatorId", status=403
                )
                continue
            else:
                status = SignatureStatus.WAITING
            # The operator posting from its registered node's address always has a place of its own.
            own = bool(source) and _socket_address(str(socket or "")) == source
            round_number = seen.get(pair, 0)
            seen[pair] = round_number + 1
            if round_number == len(rounds):
                rounds.append([])
            rounds[round_number].append((index, response, source[:64], status, own, stake))
        for items in rounds:
            _insert_round(cursor=cursor, items=items, outcomes=outcomes)
    # A conflict is known only once two different signatures have both verified (see verify.py).
    return [outcome for outcome in outcomes if outcome is not None]


def _insert_round(
    *,
    cursor: CursorWrapper,
    items: list[tuple[int, SignedResponse, str, str, bool, Decimal]],
    outcomes: list[SubmitResult | IntakeError | None],
) -> None:
    cursor.execute(
        _INSERT,
        {
            "batches": [r.batch_identifier for _, r, *_ in items],
            "operators": [r.operator_id for _, r, *_ in items],
            "roots": [r.batch_merkle_root for _, r, *_ in items],
            "senders": [r.sender_address for _, r, *_ in items],
            "xs": [_hex32(r.signature.x) for _, r, *_ in items],
            "ys": [_hex32(r.signature.y) for _, r, *_ in items],
            "statuses": [status for _, _, _, status, _, _ in items],
            "sources": [source for _, _, source, _, _, _ in items],
            "owns": [own for _, _, _, _, own, _ in items],
            "bound": int(settings.INTAKE_MAX_UNVERIFIED),
            "channel": NOTIFY_CHANNEL,
        },
    )
    rows = cursor.fetchall()
    assert len(rows) == len(items)
    for (index, response, _, status, _, stake), row in zip(items, rows, strict=True):
        _, inserted_id, same_id, same_status, same_conflicting, unverified, from_source, _ = row
        if same_id is not None:
            outcomes[index] = SubmitResult(
                status="duplicate",
                signature_id=int(same_id),
                signature_status=str(same_status),
                conflicting=bool(same_conflicting),
            )
        elif inserted_id is None:
            # Anyone can post in any operator's name: what a forger can make the verifier do is bounded.
            waiting = (
                "a signature from this address in this operator's name for this batch awaits verification"
                if from_source
                else f"{unverified} signatures in this operator's name for this batch await verification"
            )
            outcomes[index] = IntakeError(
                f"{waiting}; retry later",
                field="blsSignature",
                status=429,
                retry_after=UNVERIFIED_RETRY_AFTER,
            )
        else:
            change_announce(
                signature_accepted,
                signature_id=int(inserted_id),
                batch_identifier=response.batch_identifier,
                operator_id=response.operator_id,
                status=status,
                stake=stake,
                conflicting=False,
            )
            outcomes[index] = SubmitResult(
                status="accepted", signature_id=int(inserted_id), signature_status=status, conflicting=False
            )


# An expired signature is matched again when its batch is first seen within this window: an ingester that was
# down longer than INTAKE_WAITING_TTL must not cost an acknowledged signature (the sweep runs every second).
REVIVE_WINDOW = timedelta(hours=1)


def signatures_match_waiting() -> list[str]:
    """Waiting signatures whose batch has now been ingested become pending (or invalid without stake).

    Expired ones too, when their batch is new to the ledger: expiry only parks a signature whose batch did not
    show up in time, it never gives it up. Returns the batch identifiers that gained pending signatures.
    """
    matched: set[str] = set()
    recent = Batch.objects.filter(first_seen_at__gte=timezone.now() - REVIVE_WINDOW).values("identifier")
    with transaction.atomic():
        waiting = list(
            Signature.objects.select_for_update(skip_locked=True)
            .filter(
                Q(status=SignatureStatus.WAITING, batch_identifier__in=Batch.objects.values("identifier"))
                | Q(status=SignatureStatus.EXPIRED, batch_identifier__in=recent)
            )
            .order_by("id")[:5000]
        )
        if not waiting:
            return []
        blocks = dict(
            Batch.objects.filter(identifier__in={s.batch_identifier for s in waiting}).values_list(
                "identifier", "task_created_block"
            )
        )
        for signature in waiting:
            stake = operator_stake_at_block(
                operator_id=signature.operator_id, block_number=blocks[signature.batch_identifier]
            )
            if stake <= 0:
                signature.status = SignatureStatus.INVALID
                signature.status_reason = "operator had no stake at the batch's taskCreatedBlock"
            else:
                signature.status = SignatureStatus.PENDING
                signature.status_reason = ""
                matched.add(signature.batch_identifier)
        Signature.objects.bulk_update(waiting, ["status", "status_reason"])
    return sorted(matched)


def signatures_expire_waiting(*, now: datetime | None = None) -> int:
    """Waiting signatures older than INTAKE_WAITING_TTL that never matched a batch expire, with the reason.

    Expired is parked, not dropped: the batch turning up later still matches it (``signatures_match_waiting``).
    """
    now = now or timezone.now()
    ttl = float(settings.INTAKE_WAITING_TTL)
    expired = Signature.objects.filter(
        status=SignatureStatus.WAITING, received_at__lt=now - timedelta(seconds=ttl)
    ).update(
        status=SignatureStatus.EXPIRED,
        status_reason=f"no batch with this identifier was ingested within {ttl:g} s",
    )
    if expired:
        logger.warning("%d waiting signatures expired without a matching batch", expired)
    return expired


def intake_forget_chain(**_: object) -> None:
    """The chain was replaced (``ledger.chain_replaced``): its signatures, refusals and progress describe nothing."""
    Signature.objects.all().delete()
    BatchRefusal.objects.all().delete()
    BatchProgressChange.objects.all().delete()
