from django.contrib import admin

from quantmesh.admin import AuditLogAdmin

from .models import Alert, AlertSettings


@admin.register(Alert)
class AlertAdmin(AuditLogAdmin):
    list_display = ["created_at", "user", "kind", "instance", "status", "attempts"]
    list_filter = ["kind", "status"]
    search_fields = ["user__email", "instance__instance_id", "subject"]
    list_select_related = ["user", "instance"]


@admin.register(AlertSettings)
class AlertSettingsAdmin(admin.ModelAdmin):
    list_display = ["user", "email_enabled", "telegram_enabled"]
    search_fields = ["user__email"]
