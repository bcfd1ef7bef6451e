"""Output serializers of the read API: hex lowercase ``0x…``, wei as decimal strings, empty values as null."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from alerts.models import Alert
from intake.selectors import operator_signature_counts
from ledger.models import Batch, Operator, OperatorStake
from ledger.selectors import operator_stake_share
from liveness.selectors import operator_liveness_get


def wei_string(value: Decimal | int | None) -> str | None:
    """Wei as a plain decimal string (never exponent notation), or None."""
    return None if value is None else str(int(value))


HEX_SCHEMA = {"type": "string", "pattern": "^0x[0-9a-f]*$"}
WEI_SCHEMA = {"type": "string", "pattern": "^[0-9]+$", "description": "wei, as a decimal string"}
HEX32_SCHEMA = {"type": "string", "pattern": "^0x[0-9a-f]{64}$"}


@extend_schema_field(HEX_SCHEMA)
class HexField(serializers.CharField):
    """Lowercase hex out; an empty value is null."""

    def to_representation(self, value: Any) -> str | None:
        return str(value).lower() if value else None


@extend_schema_field(WEI_SCHEMA)
class WeiField(serializers.Field):
    def to_representation(self, value: Any) -> str | None:
        return wei_string(value)


PROGRESS_SCHEMA = {
    "type": "object",
    "nullable": True,
    "description": "Quorum progress as persisted by the verifier; null before any signature was verified.",
    "properties": {
        "signed_stake": WEI_SCHEMA,
        "total_stake": WEI_SCHEMA,
        "signed_percentage": {"type": "string", "pattern": "^[0-9]+\\.[0-9]$"},
        "threshold_percentage": {"type": "integer"},
        "quorum_reached": {"type": "boolean"},
        "quorum_reached_at": {"type": "string", "format": "date-time", "nullable": True},
        "at_risk": {"type": "boolean"},
        "signers": {"type": "array", "items": {"type": "string"}},
        "non_signers": {"type": "array", "items": {"type": "string"}},
    },
    "required": [
        "signed_stake",
        "total_stake",
        "signed_percentage",
        "threshold_percentage",
        "quorum_reached",
        "quorum_reached_at",
        "at_risk",
        "signers",
        "non_signers",
    ],
}
G1_SCHEMA = {
    "type": "object",
    "nullable": True,
    "description": "The G1 public key; null before registration.",
    "properties": {"X": HEX_SCHEMA, "Y": HEX_SCHEMA},
}
G2_SCHEMA = {
    "type": "object",
    "nullable": True,
    "description": "The G2 public key, coordinates in EVM order [imaginary, real]; null before registration.",
    "properties": {
        "X": {"type": "array", "items": HEX_SCHEMA},
        "Y": {"type": "array", "items": HEX_SCHEMA},
    },
}
LIVENESS_SCHEMA = {
    "type": "object",
    "properties": {
        "state": {"type": "string", "enum": ["unknown", "up", "degraded", "down"]},
        "since": {"type": "string", "format": "date-time", "nullable": True},
        "last_seen_at": {"type": "string", "format": "date-time", "nullable": True},
        "node_version": {"type": "string"},
    },
    "required": ["state", "since", "last_seen_at", "node_version"],
}
SIGNATURE_COUNTS_SCHEMA = {
    "type": "object",
    "description": "How many of the operator's signatures are in each status.",
    "additionalProperties": {"type": "integer", "minimum": 0},
}


def progress_json(batch: Batch) -> dict[str, Any] | None:
    """Quorum progress as persisted by the verifier, or null before the batch has any."""
    progress = getattr(
        batch, "progress", None
    )  # the reverse one-to-one raises when absent; getattr maps it to None
    if progress is None:
        return None
    return {
        "signed_stake": wei_string(progress.signed_stake),
        "total_stake": wei_string(progress.total_stake),
        "signed_percentage": f"{progress.signed_percentage:.1f}",
        "threshold_percentage": progress.threshold_percentage,
        "quorum_reached": progress.quorum_reached,
        "quorum_reached_at": progress.quorum_reached_at.isoformat() if progress.quorum_reached_at else None,
        "at_risk": progress.at_risk,
        "signers": progress.signed_operator_ids,
        "non_signers": progress.unsigned_operator_ids,
    }


class BatchOutputSerializer(serializers.ModelSerializer):
    identifier = HexField()
    batch_merkle_root = HexField(source="merkle_root")
    sender_address = HexField(source="sender")
    batch_data_pointer = serializers.CharField(source="data_pointer")
    respond_to_task_fee_limit = WeiField(source="fee_limit", allow_null=True)
    created_tx = HexField()
    verified_tx = HexField(allow_null=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Batch
        fields = [
            "identifier",
            "batch_merkle_root",
            "sender_address",
            "task_created_block",
            "batch_data_pointer",
            "respond_to_task_fee_limit",
            "event_version",
            "status",
            "created_block",
            "created_tx",
            "verified_block",
            "verified_tx",
            "first_seen_at",
            "updated_at",
            "progress",
        ]
        read_only_fields = fields

    @extend_schema_field(PROGRESS_SCHEMA)
    def get_progress(self, batch: Batch) -> dict[str, Any] | None:
        return progress_json(batch)


def _pubkey(value: Any) -> Any:
    """A stored pubkey ({"X", "Y"}; G2 in EVM order) with hex lowercased, or null before registration."""
    if not value:
        return None
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, list):
        return [_pubkey(v) for v in value]
    if isinstance(value, dict):
        return {k: _pubkey(v) for k, v in value.items()}
    return value


class OperatorOutputSerializer(serializers.ModelSerializer):
    """Needs ``total_stake`` (current stake of the registered operators) in the context."""

    operator_id = HexField()
    address = HexField(allow_null=True)
    pubkey_g1 = serializers.SerializerMethodField()
    pubkey_g2 = serializers.SerializerMethodField()
    stake = WeiField(source="current_stake")
    stake_share = serializers.SerializerMethodField()

    class Meta:
        model = Operator
        fields = [
            "operator_id",
            "address",
            "pubkey_g1",
            "pubkey_g2",
            "socket",
            "registered",
            "registered_block",
            "deregistered_block",
            "stake",
            "stake_share",
        ]
        read_only_fields = fields

    @extend_schema_field(G1_SCHEMA)
    def get_pubkey_g1(self, operator: Operator) -> Any:
        return _pubkey(operator.pubkey_g1)

    @extend_schema_field(G2_SCHEMA)
    def get_pubkey_g2(self, operator: Operator) -> Any:
        return _pubkey(operator.pubkey_g2)

    @extend_schema_field(
        {
            "type": "string",
            "nullable": True,
            "description": "Share of the registered stake (6 decimal places); null when there is none.",
        }
    )
    def get_stake_share(self, operator: Operator) -> str | None:
        share = operator_stake_share(operator=operator, total=self.context["total_stake"])
        return None if share is None else str(share)


class StakePointSerializer(serializers.ModelSerializer):
    stake = WeiField()

    class Meta:
        model = OperatorStake
        fields = ["block_number", "stake"]
        read_only_fields = fields


class OperatorDetailOutputSerializer(OperatorOutputSerializer):
    """An operator with ``stake_history`` (from the context: the selector's rows, newest first)."""

    stake_history = serializers.SerializerMethodField()
    liveness = serializers.SerializerMethodField()
    signatures = serializers.SerializerMethodField()

    class Meta(OperatorOutputSerializer.Meta):
        fields = [*OperatorOutputSerializer.Meta.fields, "stake_history", "liveness", "signatures"]
        read_only_fields = fields

    @extend_schema_field(StakePointSerializer(many=True))
    def get_stake_history(self, operator: Operator) -> Any:
        return StakePointSerializer(self.context["stake_history"], many=True).data

    @extend_schema_field(LIVENESS_SCHEMA)
    def get_liveness(self, operator: Operator) -> Any:
        return operator_liveness_get(operator_id=operator.operator_id)

    @extend_schema_field(SIGNATURE_COUNTS_SCHEMA)
    def get_signatures(self, operator: Operator) -> Any:
        return operator_signature_counts(operator_id=operator.operator_id)


class AlertOutputSerializer(serializers.ModelSerializer):
    details = serializers.JSONField(help_text="Facts at opening (stake share, lag in blocks, ...).")

    class Meta:
        model = Alert
        fields = [
            "id",
            "kind",
            "subject",
            "severity",
            "state",
            "summary",
            "details",
            "opened_at",
            "resolved_at",
            "resolution",
            "acknowledged_at",
            "acknowledged_by",
        ]
        read_only_fields = fields
