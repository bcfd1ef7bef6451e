"""Numbers for people: stake in ETH, percentages with one decimal, relative times with the UTC time beside."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

from django.utils import timezone

WEI_PER_ETH = Decimal(10**18)


def short_hex(value: str, *, keep: int = 6) -> str:
    """``0x1234ab…cdef01``: enough to tell rows apart; the full value goes in a title attribute."""
    if len(value) <= 2 + 2 * keep + 1:
        return value
    return f"{value[: 2 + keep]}…{value[-keep:]}"


def eth_display(wei: Decimal | int | str | None, *, places: int = 2) -> str:
    """Wei as ETH with ``places`` decimals and thousands separators; a non-zero dust amount says so."""
    if wei is None or wei == "":
        return "—"
    step = Decimal(1).scaleb(-places)
    amount = Decimal(wei) / WEI_PER_ETH
    if 0 < amount < step:
        return f"<{step}"
    text = f"{amount.quantize(step, rounding=ROUND_HALF_UP):,}"
    # Extra places are for small amounts (fees): no trailing zeros past the cents.
    return text if places <= 2 else re.sub(r"(\.\d\d\d*?)0+$", r"\1", text)


def percent_display(value: float | Decimal | None) -> str:
    """One decimal and a percent sign, or a dash for "no value"."""
    if value is None:
        return "—"
    return f"{float(value):.1f}%"


def utc_display(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _span(seconds: float) -> str:
    if seconds < 60:
        return f"{int(seconds)} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"


def relative_display(moment: datetime | None, *, now: datetime | None = None) -> str:
    """``5 min ago`` / ``in 3 s`` / ``just now``: coarse on purpose; the exact time is in the title."""
    if moment is None:
        return "never"
    seconds = ((now or timezone.now()) - moment).total_seconds()
    if abs(seconds) < 2:
        return "just now"
    return f"{_span(seconds)} ago" if seconds > 0 else f"in {_span(-seconds)}"


def duration_display(seconds: float | None) -> str:
    """A length of time, two units at most: ``3 h 12 min``, ``45 s``."""
    if seconds is None:
        return "—"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"
