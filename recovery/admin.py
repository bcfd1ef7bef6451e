"""Admin: audited recovery runs and their tasks (read-only), and staff actions that start runs.

- "Add recovery run" starts a run (a batch, every pending batch with scope "all-pending", or an operator's
  catch-up), dry run by default, and opens the run so its plan shows exactly what would be sent.
- Batch changelist: "Replay selected batches (dry run)" / "Replay selected batches".
- Operator changelist: "Catch up selected operators (dry run)" / "Catch up selected operators".

Every start goes through ``recovery_run_start``, so each one is a RecoveryRun row naming who asked.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import InlineModelAdmin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from ledger.models import Batch, Operator
from recovery.models import RecoveryKind, RecoveryRun, RecoveryTask
from recovery.services.runs import catchup_plan, recovery_run_start, replay_plan

RUN_DETAIL_FIELDS = ("kind", "scope", "requested_by", "dry_run", "created_at", "outcome", "plan_json")
TASK_FIELDS = ("kind", "subject", "status", "attempts", "last_error", "next_attempt_at", "updated_at")


def _short(identifier: str) -> str:
    return f"{identifier[:10]}…{identifier[-6:]}" if len(identifier) > 20 else identifier


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by services (tasks, ledger), never edited by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_staff_permission(self, request: HttpRequest) -> bool:
        """For actions that change state for people (replays, catch-ups, acknowledgements): active staff only."""
        return bool(request.user.is_active and request.user.is_staff)


class RecoveryTaskInline(admin.TabularInline):
    model = RecoveryTask
    fk_name = "run"
    fields = TASK_FIELDS
    readonly_fields = TASK_FIELDS
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RecoveryRunStartForm(forms.ModelForm):
    kind = forms.ChoiceField(
        choices=[
            (RecoveryKind.REPLAY.value, RecoveryKind.REPLAY.label),
            (RecoveryKind.CATCHUP.value, RecoveryKind.CATCHUP.label),
        ]
    )
    scope = forms.CharField(
        max_length=66,
        help_text='Replay: a batch identifier (0x + 64 hex) or "all-pending". Catch-up: an operatorId.',
    )
    dry_run = forms.BooleanField(
        required=False, initial=True, help_text="Only record what would be sent; request nothing."
    )

    class Meta:
        model = RecoveryRun
        fields = ("kind", "scope", "dry_run")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        kind, scope = cleaned.get("kind"), cleaned.get("scope")
        if kind and scope:
            try:
                if kind == RecoveryKind.REPLAY:
                    replay_plan(scope=scope)
                else:
                    catchup_plan(operator_id=scope)
            except ValueError as exc:
                self.add_error("scope", str(exc))
        return cleaned


@admin.register(RecoveryRun)
class RecoveryRunAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "scope", "requested_by", "dry_run", "created_at", "outcome")
    list_filter = ("kind", "dry_run")
    search_fields = ("scope", "requested_by", "outcome")
    ordering = ("-created_at", "-id")
    date_hierarchy = "created_at"

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = RecoveryRunStartForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("kind", "scope", "dry_run") if obj is None else RUN_DETAIL_FIELDS

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return () if obj is None else RUN_DETAIL_FIELDS

    def get_inlines(self, request: HttpRequest, obj: Any) -> list[type[InlineModelAdmin]]:
        return [] if obj is None else [RecoveryTaskInline]

    @admin.display(description="plan")
    def plan_json(self, run: RecoveryRun) -> str:
        return format_html("<pre>{}</pre>", json.dumps(run.plan, indent=2, sort_keys=True))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_staff) and super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # an audit record

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: RecoveryRun, form: Any, change: bool) -> None:
        """Adding a run starts it: the service writes the row (and requests the tasks) itself."""
        run = recovery_run_start(
            kind=RecoveryKind(form.cleaned_data["kind"]),
            scope=form.cleaned_data["scope"],
            requested_by=request.user.get_username(),
            dry_run=bool(form.cleaned_data["dry_run"]),
        )
        obj.__dict__.update({k: v for k, v in run.__dict__.items() if k != "_state"})
        obj._state.adding = False
        obj._state.db = run._state.db

    def response_add(
        self, request: HttpRequest, obj: RecoveryRun, post_url_continue: str | None = None
    ) -> Any:
        self.message_user(request, f"Run #{obj.pk}: {obj.outcome}", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:recovery_recoveryrun_change", args=[obj.pk]))


@admin.register(RecoveryTask)
class RecoveryTaskAdmin(ReadOnlyAdmin):
    list_display = ("id", "kind", "subject", "status", "attempts", "next_attempt_at", "requested_by", "run")
    list_filter = ("kind", "status")
    search_fields = ("subject", "requested_by", "reason")
    list_select_related = ("run",)
    ordering = ("-id",)
    readonly_fields = (
        "kind",
        "subject",
        "status",
        "attempts",
        "next_attempt_at",
        "lease_until",
        "leased_by",
        "last_error",
        "requested_by",
        "reason",
        "result",
        "run",
        "created_at",
        "updated_at",
        "finished_at",
    )


def _staff_only(admin_: admin.ModelAdmin, request: HttpRequest) -> bool:
    if not request.user.is_staff:
        admin_.message_user(request, "Only staff can start recovery runs.", messages.ERROR)
        return False
    return True


def _start_runs(
    admin_: admin.ModelAdmin, request: HttpRequest, *, kind: RecoveryKind, scopes: list[str], dry_run: bool
) -> list[RecoveryRun]:
    runs = []
    for scope in scopes:
        try:
            runs.append(
                recovery_run_start(
                    kind=kind, scope=scope, requested_by=request.user.get_username(), dry_run=dry_run
                )
            )
        except ValueError as exc:
            admin_.message_user(request, f"{_short(scope)}: {exc}", messages.ERROR)
    return runs


def _run_ids(runs: list[RecoveryRun]) -> str:
    return ", ".join(f"#{run.pk}" for run in runs)


class BatchRecoveryAdmin(ReadOnlyAdmin):
    """Batches as the ledger has them (read-only), with replay actions."""

    list_display = ("identifier", "status", "created_block", "task_created_block", "verified_block")
    list_filter = ("status",)
    search_fields = ("identifier", "merkle_root", "sender")
    ordering = ("-created_block", "-id")
    actions = ("replay_dry_run", "replay")

    def _replay(self, request: HttpRequest, queryset: QuerySet[Batch], *, dry_run: bool) -> None:
        if not _staff_only(self, request):
            return
        scopes = list(queryset.order_by("created_block", "id").values_list("identifier", flat=True))
        runs = _start_runs(self, request, kind=RecoveryKind.REPLAY, scopes=scopes, dry_run=dry_run)
        planned = [entry for run in runs for entry in run.plan["batches"]]
        skipped = [entry for run in runs for entry in run.plan["skipped"]]
        if planned:
            identifiers = ", ".join(entry["identifier"] for entry in planned)
            signatures = sum(entry["verified_signatures"] for entry in planned)
            verb = "would be replayed" if dry_run else "replay requested"
            prefix = "Dry run: " if dry_run else ""
            self.message_user(
                request,
                f"{prefix}{len(planned)} batch(es) {verb}, {signatures} verified signature(s): {identifiers} "
                f"(runs {_run_ids(runs)})",
                messages.SUCCESS,
            )
        for entry in skipped:
            self.message_user(request, f"Skipped {entry['identifier']}: {entry['reason']}", messages.WARNING)

    @admin.action(description="Replay selected batches (dry run)", permissions=["staff"])
    def replay_dry_run(self, request: HttpRequest, queryset: QuerySet[Batch]) -> HttpResponse | None:
        self._replay(request, queryset, dry_run=True)
        return None

    @admin.action(description="Replay selected batches", permissions=["staff"])
    def replay(self, request: HttpRequest, queryset: QuerySet[Batch]) -> HttpResponse | None:
        self._replay(request, queryset, dry_run=False)
        return None


class OperatorRecoveryAdmin(ReadOnlyAdmin):
    """Operators as the ledger has them (read-only), with catch-up actions."""

    list_display = ("operator_id", "address", "registered", "current_stake", "socket")
    list_filter = ("registered",)
    search_fields = ("operator_id", "address", "socket")
    ordering = ("operator_id",)
    actions = ("catchup_dry_run", "catchup")

    def _catchup(self, request: HttpRequest, queryset: QuerySet[Operator], *, dry_run: bool) -> None:
        if not _staff_only(self, request):
            return
        scopes = list(queryset.order_by("operator_id").values_list("operator_id", flat=True))
        for run in _start_runs(self, request, kind=RecoveryKind.CATCHUP, scopes=scopes, dry_run=dry_run):
            batches = [entry["identifier"] for entry in run.plan["batches"]]
            listed = f": {', '.join(batches)}" if batches and dry_run else ""
            self.message_user(
                request,
                f"Operator {run.scope} (run #{run.pk}): {run.outcome}{listed}",
                messages.SUCCESS if batches else messages.INFO,
            )

    @admin.action(description="Catch up selected operators (dry run)", permissions=["staff"])
    def catchup_dry_run(self, request: HttpRequest, queryset: QuerySet[Operator]) -> HttpResponse | None:
        self._catchup(request, queryset, dry_run=True)
        return None

    @admin.action(description="Catch up selected operators", permissions=["staff"])
    def catchup(self, request: HttpRequest, queryset: QuerySet[Operator]) -> HttpResponse | None:
        self._catchup(request, queryset, dry_run=False)
        return None


# The ledger's apps register no admin of their own for these; if one ever does, it wins and these stay out.
if not admin.site.is_registered(Batch):
    admin.site.register(Batch, BatchRecoveryAdmin)
if not admin.site.is_registered(Operator):
    admin.site.register(Operator, OperatorRecoveryAdmin)
