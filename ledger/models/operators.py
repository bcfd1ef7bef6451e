from __future__ import annotations

from django.db import models

from controlplane.fields import HexField, WeiField


class Operator(models.Model):
    """An operator as the registry events describe it; operatorId = keccak256(G1 pubkey)."""

    operator_id = HexField(max_length=66, unique=True)
    address = HexField(max_length=42, db_index=True)
    pubkey_g1 = models.JSONField(default=dict)  # {"X": "0x…", "Y": "0x…"}
    pubkey_g2 = models.JSONField(default=dict)  # {"X": ["0x imag", "0x real"], "Y": [...]} (EVM order)
    socket = models.TextField(blank=True, default="")
    registered = models.BooleanField(default=False)
    registered_block = models.BigIntegerField(null=True, blank=True)
    deregistered_block = models.BigIntegerField(null=True, blank=True)
    current_stake = WeiField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "monitoring_operator"

    def __str__(self) -> str:
        return f"operator {self.operator_id[:10]}"


class OperatorStake(models.Model):
    """Stake history: one row per OperatorStakeUpdate log; the stake at block B is the last row at or before B."""

    operator_id = HexField(max_length=66)
    quorum_number = models.PositiveSmallIntegerField(default=0)
    stake = WeiField()
    block_number = models.BigIntegerField()
    log_index = models.IntegerField()
    event = models.OneToOneField("ledger.ChainEvent", on_delete=models.CASCADE, related_name="stake_update")
    removed = models.BooleanField(default=False)

    class Meta:
        db_table = "monitoring_operatorstake"
        indexes = [models.Index(fields=["operator_id", "quorum_number", "block_number", "log_index"])]

    def __str__(self) -> str:
        return f"{self.operator_id[:10]} stake {self.stake} @{self.block_number}"
