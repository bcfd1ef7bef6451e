from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import models


class WeiField(models.DecimalField):
    """Wei as NUMERIC(78, 0): every uint256 fits, no float ever touches it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", 78)
        kwargs.setdefault("decimal_places", 0)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        kwargs.pop("max_digits", None)
        kwargs.pop("decimal_places", None)
        return name, path, args, kwargs


def wei(value: int | str | Decimal) -> Decimal:
    return Decimal(int(value))


class HexField(models.CharField):
    """Lowercase 0x-prefixed hex; the ingest writes it lowercase, the field keeps it that way."""

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        return value.lower() if isinstance(value, str) else value
