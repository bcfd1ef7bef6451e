from __future__ import annotations

from django.contrib.postgres.indexes import BrinIndex
from django.db import models

from controlplane.fields import HexField


class Block(models.Model):
    """A block the ingester crossed: kept for a window below the head to find a fork point by hash."""

    chain_id = models.BigIntegerField()
    number = models.BigIntegerField()
    hash = HexField(max_length=66)
    # Blank for a block known only from its logs (deep backfill fetches no header for it).
    parent_hash = HexField(max_length=66, blank=True, default="")
    timestamp = models.BigIntegerField(null=True, blank=True)
    removed = models.BooleanField(default=False)
    seen_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "monitoring_block"
        constraints = [models.UniqueConstraint(fields=["chain_id", "hash"], name="block_unique_hash")]
        indexes = [models.Index(fields=["chain_id", "number"])]

    def __str__(self) -> str:
        return f"block {self.number} {self.hash[:10]}"


class ChainEvent(models.Model):
    """One log, exactly once: unique on (chain_id, block_hash, log_index); orphaned logs are kept, marked removed."""

    chain_id = models.BigIntegerField()
    block_number = models.BigIntegerField()
    block_hash = HexField(max_length=66)
    log_index = models.IntegerField()
    transaction_hash = HexField(max_length=66)
    transaction_index = models.IntegerField()
    address = HexField(max_length=42)
    topic0 = HexField(max_length=66)
    name = models.CharField(max_length=64)
    # What the event is about: a batch identifier or an operatorId; lets a reorg rebuild exactly what it touched.
    subject = HexField(max_length=66, blank=True, default="")
    args = models.JSONField()
    removed = models.BooleanField(default=False)
    removed_at = models.DateTimeField(null=True, blank=True)
    ingested_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "monitoring_chainevent"
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "block_hash", "log_index"], name="event_unique_log"),
        ]
        indexes = [
            models.Index(fields=["subject", "block_number", "log_index"]),
            # Rows arrive in block order, so a BRIN index serves the (rare) rollback scan at a fraction of the
            # write cost of a btree.
            BrinIndex(fields=["block_number"], name="event_block_brin"),
        ]

    def __str__(self) -> str:
        return f"{self.name} @{self.block_number}#{self.log_index}"


class IngestCursor(models.Model):
    """How far one contract's logs are ingested: (block number, block hash), moved with the rows it covers."""

    chain_id = models.BigIntegerField()
    address = HexField(max_length=42)
    block_number = models.BigIntegerField()
    block_hash = HexField(max_length=66)
    # Which chain this cursor follows: a node answering with another genesis is another chain (a new devnet).
    genesis_hash = HexField(max_length=66, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "monitoring_ingestcursor"
        constraints = [models.UniqueConstraint(fields=["chain_id", "address"], name="cursor_unique_contract")]

    def __str__(self) -> str:
        return f"{self.address} at {self.block_number}"


class IngestIncidentKind(models.TextChoices):
    REORG = "reorg", "Reorg"
    DEEP_REORG = "deep_reorg", "Reorg deeper than the blocks kept"
    RPC_ERROR = "rpc_error", "RPC error"
    CHAIN_CHANGED = "chain_changed", "The node serves a different chain than the ledger holds"
    LEDGER_RESET = "ledger_reset", "Ledger reset"


class IngestIncident(models.Model):
    """Append-only record of what went wrong (or was repaired) while ingesting; never silence."""

    chain_id = models.BigIntegerField()
    kind = models.CharField(max_length=32, choices=IngestIncidentKind.choices)
    address = HexField(max_length=42, blank=True, default="")
    block_number = models.BigIntegerField(null=True, blank=True)
    depth = models.IntegerField(null=True, blank=True)
    detail = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "monitoring_ingestincident"
        indexes = [models.Index(fields=["kind", "created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} at {self.block_number}"
