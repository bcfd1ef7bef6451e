"""Admin: webhook endpoints (staff register them) with their delivery log read-only, and alerts (read-only,
with an "acknowledge" action).

Deliveries and attempts are written only by the webhook services; staff can ask for an immediate retry (after
fixing a receiver) but never edit a row.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import InlineModelAdmin
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html

from alerts.models import Alert, WebhookAttempt, WebhookDelivery, WebhookDeliveryStatus, WebhookEndpoint
from alerts.services import alert_acknowledge
from alerts.webhooks import webhook_deliveries_retry_now
from recovery.admin import ReadOnlyAdmin

DELIVERY_FIELDS = (
    "event",
    "alert",
    "status",
    "attempts",
    "next_attempt_at",
    "last_status_code",
    "last_error",
    "delivered_at",
)


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class UndeliveredInline(ReadOnlyInline):
    """What the endpoint still owes; the whole log is one click away (the deliveries list)."""

    model = WebhookDelivery
    verbose_name_plural = "undelivered (retried until the receiver takes them)"
    fields = DELIVERY_FIELDS
    readonly_fields = DELIVERY_FIELDS
    ordering = ("id",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebhookDelivery]:
        return super().get_queryset(request).filter(status=WebhookDeliveryStatus.PENDING)


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(
        max_length=500, assume_scheme="https", help_text="Receives Alertmanager-format POSTs."
    )

    class Meta:
        model = WebhookEndpoint
        fields = ("name", "url", "active")


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ("name", "url", "active", "pending", "delivered", "created_by", "created_at")
    list_filter = ("active",)
    search_fields = ("name", "url")
    fields = ("name", "url", "active", "created_by", "created_at", "log")
    readonly_fields = ("created_by", "created_at", "log")

    def get_inlines(self, request: HttpRequest, obj: Any) -> list[type[InlineModelAdmin]]:
        return [] if obj is None else [UndeliveredInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[WebhookEndpoint]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                pending_count=Count("deliveries", filter=Q(deliveries__status=WebhookDeliveryStatus.PENDING)),
                delivered_count=Count(
                    "deliveries", filter=Q(deliveries__status=WebhookDeliveryStatus.DELIVERED)
                ),
            )
        )

    @admin.display(description="pending", ordering="pending_count")
    def pending(self, endpoint: Any) -> int:
        return int(endpoint.pending_count)

    @admin.display(description="delivered", ordering="delivered_count")
    def delivered(self, endpoint: Any) -> int:
        return int(endpoint.delivered_count)

    @admin.display(description="delivery log")
    def log(self, endpoint: WebhookEndpoint) -> str:
        if endpoint.pk is None:
            return "-"
        url = reverse("admin:alerts_webhookdelivery_changelist") + f"?endpoint__id__exact={endpoint.pk}"
        return format_html('<a href="{}">every delivery and attempt</a>', url)

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user.get_username()
        super().save_model(request, obj, form, change)


class AttemptInline(ReadOnlyInline):
    model = WebhookAttempt
    fields = ("attempted_at", "status_code", "error", "duration_ms")
    readonly_fields = fields
    ordering = ("-id",)
    show_change_link = False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "endpoint",
        "alert",
        "event",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
    )
    list_filter = ("status", "event", "endpoint")
    list_select_related = ("endpoint", "alert")
    search_fields = ("alert__subject", "last_error")
    ordering = ("-id",)
    readonly_fields = ("endpoint", "alert", "created_at", "lease_until", *DELIVERY_FIELDS)
    inlines = (AttemptInline,)
    actions = ("retry_now",)

    @admin.action(description="Retry selected deliveries now", permissions=["staff"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> HttpResponse | None:
        count = webhook_deliveries_retry_now(ids=list(queryset.values_list("id", flat=True)))
        self.message_user(
            request, f"{count} undelivered delivery(ies) will be retried now.", messages.SUCCESS
        )
        return None


class AlertDeliveryInline(ReadOnlyInline):
    model = WebhookDelivery
    fields = ("endpoint", "event", "status", "attempts", "last_status_code", "delivered_at")
    readonly_fields = fields
    ordering = ("id",)


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "kind",
        "short_subject",
        "severity",
        "state",
        "opened_at",
        "resolved_at",
        "acknowledged_by",
    )
    list_filter = ("state", "kind", "severity")
    search_fields = ("subject", "summary")
    ordering = ("-opened_at", "-id")
    date_hierarchy = "opened_at"
    readonly_fields = (
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
    )
    inlines = (AlertDeliveryInline,)
    actions = ("acknowledge",)

    @admin.display(description="subject")
    def short_subject(self, alert: Alert) -> str:
        subject = alert.subject
        return f"{subject[:10]}…{subject[-6:]}" if len(subject) > 20 else subject

    @admin.action(description="Acknowledge selected alerts", permissions=["staff"])
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Alert]) -> HttpResponse | None:
        # Acknowledging only records who has seen it; the alert still resolves by itself.
        fresh = list(queryset.filter(acknowledged_at__isnull=True))
        for alert in fresh:
            alert_acknowledge(alert=alert, user=request.user.get_username())
        self.message_user(request, f"{len(fresh)} alert(s) acknowledged.", messages.SUCCESS)
        return None
