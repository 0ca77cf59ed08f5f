from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.utils.translation import gettext_lazy as _

from quantmesh.admin import AuditLogAdmin

from . import throttling
from .models import ApiToken, SecurityEvent, User
from .services import api_token_revoke


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "full_name", "is_active", "is_staff", "date_joined", "last_login"]
    list_filter = ["is_active", "is_staff", "is_superuser"]
    search_fields = ["email", "full_name"]
    readonly_fields = ["date_joined", "last_login"]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        (_("Profile"), {"fields": ["full_name"]}),
        (_("Permissions"), {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        (_("Dates"), {"fields": ["date_joined", "last_login"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]
    actions = ["unlock_login"]

    @admin.action(description=_("Lift login lock-out"))
    def unlock_login(self, request, queryset):
        for user in queryset:
            throttling.lift_locks(email=user.email)
        messages.success(request, _("Login lock-out lifted for %d account(s).") % queryset.count())


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "created_at", "expires_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter), "created_at"]
    search_fields = ["user__email", "name", "prefix"]
    readonly_fields = ["user", "key_hash", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_select_related = ["user"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        # A token's secret is shown once to its owner; staff never create or see one.
        return False

    @admin.action(description=_("Revoke selected tokens"))
    def revoke(self, request, queryset):
        for token in queryset.filter(revoked_at__isnull=True):
            api_token_revoke(token=token, request=request)


@admin.register(SecurityEvent)
class SecurityEventAdmin(AuditLogAdmin):
    list_display = ["created_at", "kind", "email", "user", "ip_address"]
    list_filter = ["kind", "created_at"]
    search_fields = ["email", "user__email", "ip_address"]
    date_hierarchy = "created_at"
    list_select_related = ["user"]
