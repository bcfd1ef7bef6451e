"""``{% load dashboard %}``: the dashboard's formatting helpers as template filters."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from dashboard import formatting

register = template.Library()


@register.filter
def eth(wei: Decimal | int | str | None, places: int | str = 2) -> str:
    """``32.00 ETH``; ``|eth:6`` for small amounts such as fees."""
    text = formatting.eth_display(wei if isinstance(wei, Decimal | int | str) else None, places=int(places))
    return text if text == "—" else f"{text} ETH"


@register.filter
def pct(value: float | Decimal | None) -> str:
    return formatting.percent_display(value if isinstance(value, int | float | Decimal) else None)


@register.filter
def short(value: str | None) -> str:
    return formatting.short_hex(value) if value else "—"


@register.filter
def utc(moment: datetime | None) -> str:
    return formatting.utc_display(moment if isinstance(moment, datetime) else None)


@register.filter
def duration(seconds: float | None) -> str:
    return formatting.duration_display(seconds if isinstance(seconds, int | float) else None)


@register.filter
def when(moment: datetime | None) -> SafeString:
    """A relative time with the absolute UTC time in its title; live.js keeps the relative text current."""
    # A missing object's attribute renders as "" in a template: the same as never.
    if not isinstance(moment, datetime):
        return format_html('<span class="muted">{}</span>', "never")
    return format_html(
        '<time datetime="{}" title="{}" data-relative>{}</time>',
        moment.isoformat(),
        formatting.utc_display(moment),
        formatting.relative_display(moment),
    )


@register.filter
def hexid(value: str | None) -> SafeString:
    """A shortened hex value in ``<code>``, the full value in its title (and copyable)."""
    if not value:
        return format_html('<span class="muted">{}</span>', "—")
    return format_html('<code class="hex" title="{}">{}</code>', value, formatting.short_hex(value))
