"""Values people type (ids and moments in URLs and filters), read strictly and made safe for Postgres."""

from __future__ import annotations

from datetime import UTC, datetime

from django.utils import timezone


def datetime_utc(parsed: datetime) -> datetime:
    """``parsed`` in UTC (a naive one is read as UTC). Postgres refuses offsets beyond ±15:59 that Python
    accepts, so an aware moment is converted; year 1 or 9999 shifted past the calendar's end is clamped."""
    if timezone.is_naive(parsed):
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        return (datetime.min if parsed.year == datetime.min.year else datetime.max).replace(tzinfo=UTC)


BIGINT_MAX = 2**63 - 1


def ascii_int(text: str, *, minimum: int = 0, maximum: int | None = BIGINT_MAX) -> int | None:
    """``text`` as an integer if it is plain ASCII digits within the bounds, else None. (``str.isdigit`` also
    takes "²" and other digits ``int`` refuses, and ids must fit a bigint.)"""
    if not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if minimum <= value and (maximum is None or value <= maximum) else None
