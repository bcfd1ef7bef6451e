"""Input and output serializers of the recovery API."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from recovery.models import RecoveryRun, RecoveryTask

BYTES32_SCHEMA = {"type": "string", "pattern": "^0x[0-9a-fA-F]{64}$"}


def _bytes32(description: str, *, required: bool = True) -> serializers.CharField:
    # Validated (with a message naming the field) by the view; the pattern tells the schema's readers.
    field = serializers.CharField(required=required, max_length=100, help_text=description)
    return extend_schema_field({**BYTES32_SCHEMA, "description": description})(field)


class ReplayInputSerializer(serializers.Serializer):
    """``{"batch": "0x…"}`` or ``{"all_pending": true}``, and optionally ``"dry_run": true``."""

    batch = _bytes32("The batch identifier to replay (or give all_pending).", required=False)
    all_pending = serializers.BooleanField(required=False, default=False)
    dry_run = serializers.BooleanField(required=False, default=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("batch") and attrs["all_pending"]:
            raise serializers.ValidationError({"all_pending": "give either batch or all_pending, not both"})
        if not attrs.get("batch") and not attrs["all_pending"]:
            raise serializers.ValidationError({"batch": "give a batch identifier, or all_pending: true"})
        return attrs


class CatchupInputSerializer(serializers.Serializer):
    """``{"operator_id": "0x…"}`` and optionally ``"dry_run": true``."""

    operator_id = _bytes32("The operatorId to ask to catch up.")
    dry_run = serializers.BooleanField(required=False, default=False)


class ResponseInputSerializer(serializers.Serializer):
    """``{"batch": "0x…"}`` and optionally ``"dry_run": true`` (the struct and the simulated call, nothing sent)."""

    batch = _bytes32("The pending batch the standby should answer on chain.")
    dry_run = serializers.BooleanField(required=False, default=False)


class RecoveryTaskOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = RecoveryTask
        fields = ["id", "kind", "subject", "status", "attempts", "last_error"]
        read_only_fields = fields


class RecoveryRunOutputSerializer(serializers.ModelSerializer):
    """A run with its tasks (prefetch ``recoverytask_set`` ordered by id to avoid a query per run)."""

    tasks = RecoveryTaskOutputSerializer(source="recoverytask_set", many=True, read_only=True)

    class Meta:
        model = RecoveryRun
        fields = ["id", "kind", "scope", "requested_by", "dry_run", "plan", "outcome", "created_at", "tasks"]
        read_only_fields = fields
