"""API tokens in the admin: staff create them (the key is shown once) and revoke them; rows are kept for audit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from controlplane.auth import api_token_key_assign, api_token_revoke, api_token_scope_check
from controlplane.models import ApiToken

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldGroups


class ApiTokenForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["name", "user", "scope"]

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        user, scope = cleaned.get("user"), cleaned.get("scope")
        if user is not None and scope:
            try:
                api_token_scope_check(user=user, scope=scope)
            except ValueError as exc:
                raise forms.ValidationError({"scope": str(exc)}) from exc
        return cleaned


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    form = ApiTokenForm
    list_display = [
        "name",
        "prefix",
        "user",
        "scope",
        "is_active",
        "created_by",
        "created_at",
        "last_used_at",
    ]
    list_filter = ["scope", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "user__username"]
    actions = ["revoke"]
    readonly_fields = ["prefix", "created_by", "created_at", "last_used_at", "revoked_at", "revoked_by"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        # A token's owner and scope are what it was issued as: issue a new one rather than change them.
        fields = list(self.readonly_fields)
        return [*fields, "user", "scope"] if obj is not None else fields

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> _FieldGroups:
        if obj is None:
            return ["name", "user", "scope"]
        return ["name", "user", "scope", *self.readonly_fields]

    @admin.display(boolean=True, description="active")
    def is_active(self, token: ApiToken) -> bool:
        return token.active

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        key = api_token_key_assign(token=obj)
        obj.created_by = request.user.get_username()
        super().save_model(request, obj, form, change)
        self.message_user(
            request,
            f"The key of {obj.name!r} is {key} — copy it now: it is stored only as a hash and will not be "
            "shown again. Send it as 'Authorization: Token <key>'.",
            messages.WARNING,
        )

    def has_delete_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False  # revoke instead: the row is the audit trail of who could do what

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = sum(
            api_token_revoke(token=token, revoked_by=request.user.get_username()) for token in queryset
        )
        self.message_user(request, f"{revoked} token(s) revoked.", messages.SUCCESS)
