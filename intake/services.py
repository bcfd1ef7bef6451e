"""Intake services: store a signed response durably (then it may be acknowledged), match and expire waiting ones."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from controlplane.changes import change_announce, signature_accepted
from controlplane.clients import Rate, rate_check
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
# The lock is taken by the lookup, a statement before the insert's: a statement sees what committed before it began,
# so the count must come from a later statement than the wait for the lock.
_LOOKUP = f"""
SELECT o.registered, b.task_created_block, o.socket,
    {stake_at_block_sql(operator="o.operator_id", block="b.task_created_block")},
    pg_advisory_xact_lock(hashtextextended(%(pair)s, 0))::text
FROM monitoring_operator o LEFT JOIN monitoring_batch b ON b.identifier = %(batch)s
WHERE o.operator_id = %(operator)s
"""

# In one round trip: an identical earlier submission (a duplicate), how many of the pair are unverified, the
# insert when it is neither a duplicate nor over the bound, and the verifiers' wake-up for a pending one.
_INSERT = """
WITH same AS (
    SELECT id, status, conflicting FROM monitoring_signature
    WHERE batch_identifier = %(batch)s AND operator_id = %(operator)s AND signature_x = %(x)s AND signature_y = %(y)s
), unverified AS (
    SELECT count(*) AS n, count(*) FILTER (WHERE source = %(source)s) AS from_source FROM monitoring_signature
    WHERE batch_identifier = %(batch)s AND operator_id = %(operator)s AND status IN ('pending', 'waiting')
), inserted AS (
    INSERT INTO monitoring_signature (batch_identifier, batch_merkle_root, sender_address, operator_id,
        signature_x, signature_y, status, status_reason, conflicting, source, received_at)
    SELECT %(batch)s, %(root)s, %(sender)s, %(operator)s, %(x)s, %(y)s, %(status)s, '', false, %(source)s, now()
    WHERE NOT EXISTS (SELECT 1 FROM same)
        AND (%(own)s OR ((SELECT from_source FROM unverified) = 0 AND (SELECT n FROM unverified) < %(bound)s))
    ON CONFLICT (batch_identifier, operator_id, signature_x, signature_y) DO NOTHING
    RETURNING id
), notified AS (
    SELECT pg_notify(%(channel)s, %(batch)s)::text FROM inserted WHERE %(status)s = 'pending'
)
SELECT (SELECT id FROM inserted), (SELECT id FROM same), (SELECT status FROM same),
    (SELECT conflicting FROM same), (SELECT n FROM unverified), (SELECT from_source FROM unverified),
    (SELECT count(*) FROM notified)
"""

# Seconds a submitter over the bound is told to wait: about a verifier round.
UNVERIFIED_RETRY_AFTER = 2

# Verifiers LISTEN on this channel; the notification is delivered only if the transaction commits.
NOTIFY_CHANNEL = "signatures_pending"


def signature_receive(
    *, source: str, parse: Callable[[], SignedResponse]
) -> tuple[SignedResponse, SubmitResult]:
    """The intake of every wire (HTTP JSON, net/rpc gob): the per-address rate, then ``parse``, then the store.

    Raises IntakeError when nothing was stored: 429 over the rate, what ``parse`` or the checks refuse, 503 when
    Postgres can't take it now. The adapters only translate the outcome into their wire's answer.
    """
    wait = rate_check(key=f"intake:{source}", rate=Rate.parse(settings.INTAKE_RATE), fail_open=True)
    if wait is not None:
        raise IntakeError(
            f"more than {settings.INTAKE_RATE} posts from {source}", status=429, retry_after=wait
        )
    response = parse()
    try:
        return response, signature_submit(response=response, source=source)
    except DatabaseError as exc:
        # Nothing was acknowledged, so nothing is lost: the sender is told to retry rather than failed opaquely.
        logger.error("intake storage unavailable: %s", exc)
        raise IntakeError("storage temporarily unavailable; retry", status=503, retry_after=1) from None


def signature_submit(*, response: SignedResponse, source: str = "") -> SubmitResult:
    """Check the operator, store the signature, commit. Raises IntakeError (403) for an unknown operator.

    Returns only after the row is committed: from then on it cannot be lost, so the caller may acknowledge.
    """
    sig_x, sig_y = _hex32(response.signature.x), _hex32(response.signature.y)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            _LOOKUP,
            {
                "batch": response.batch_identifier,
                "operator": response.operator_id,
                "pair": response.batch_identifier + response.operator_id,
            },
        )
        found = cursor.fetchone()
        if found is None:
            raise IntakeError("operatorId is not a registered operator", field="operatorId", status=403)
        registered, task_created_block, socket, stake, _ = found
        if task_created_block is not None:
            if not stake or stake <= 0:
                raise IntakeError(
                    "operatorId had no stake at the batch's taskCreatedBlock", field="operatorId", status=403
                )
            status = SignatureStatus.PENDING
        elif not registered:
            raise IntakeError("operatorId is not a registered operator", field="operatorId", status=403)
        else:
            status = SignatureStatus.WAITING

        cursor.execute(
            _INSERT,
            {
                "batch": response.batch_identifier,
                "operator": response.operator_id,
                "root": response.batch_merkle_root,
                "sender": response.sender_address,
                "x": sig_x,
                "y": sig_y,
                "status": status,
                "source": source[:64],
                "bound": int(settings.INTAKE_MAX_UNVERIFIED),
                # The operator posting from its registered node's address always has a place of its own.
                "own": bool(source) and _socket_address(str(socket or "")) == source,
                "channel": NOTIFY_CHANNEL,
            },
        )
        row = cursor.fetchone()
        assert row is not None
        inserted_id, same_id, same_status, same_conflicting, unverified, from_source, _ = row
        if same_id is not None:
            return SubmitResult(
                status="duplicate",
                signature_id=int(same_id),
                signature_status=str(same_status),
                conflicting=bool(same_conflicting),
            )
        if inserted_id is None:
            # Anyone can post in any operator's name: what a forger can make the verifier do is bounded.
            waiting = (
                "a signature from this address in this operator's name for this batch awaits verification"
                if from_source
                else f"{unverified} signatures in this operator's name for this batch await verification"
            )
            raise IntakeError(
                f"{waiting}; retry later",
                field="blsSignature",
                status=429,
                retry_after=UNVERIFIED_RETRY_AFTER,
            )
        change_announce(
            signature_accepted,
            signature_id=int(inserted_id),
            batch_identifier=response.batch_identifier,
            operator_id=response.operator_id,
            status=status,
            stake=stake,
            conflicting=False,
        )
    # A conflict is known only once two different signatures have both verified (see verify.py).
    return SubmitResult(
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
