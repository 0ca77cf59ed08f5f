from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from quantmesh.admin import AuditLogAdmin

from . import services
from .models import Instance, InstanceEvent


class InstanceEventInline(admin.TabularInline):
    model = InstanceEvent
    extra = 0
    can_delete = False
    fields = ["created_at", "kind", "from_status", "to_status", "actor", "detail"]
    readonly_fields = fields
    ordering = ["-created_at"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = [
        "instance_id",
        "owner",
        "plan",
        "status",
        "desired_state",
        "healthy",
        "restart_count",
        "last_failure_reason",
        "created_at",
    ]
    list_filter = ["status", "desired_state", "plan", "healthy"]
    search_fields = ["instance_id", "slug", "owner__email"]
    list_select_related = ["owner", "plan"]
    date_hierarchy = "created_at"
    inlines = [InstanceEventInline]
    exclude = ["proxy_secret_encrypted"]
    readonly_fields = [f.name for f in Instance._meta.fields if f.name != "proxy_secret_encrypted"]
    actions = ["start", "stop", "restart"]

    def has_add_permission(self, request):
        return False  # instances are created by customers through the services, with their checks

    def has_delete_permission(self, request, obj=None):
        return False  # deletion goes through the lifecycle (graceful stop, data retention)

    @admin.action(description=_("Start selected instances"))
    def start(self, request, queryset):
        for instance in queryset:
            services.instance_start(instance=instance, actor=request.user)

    @admin.action(description=_("Stop selected instances"))
    def stop(self, request, queryset):
        for instance in queryset:
            services.instance_stop(instance=instance, actor=request.user)

    @admin.action(description=_("Restart selected instances"))
    def restart(self, request, queryset):
        for instance in queryset:
            services.instance_restart(instance=instance, actor=request.user)


@admin.register(InstanceEvent)
class InstanceEventAdmin(AuditLogAdmin):
    list_display = ["created_at", "instance", "kind", "from_status", "to_status", "actor"]
    list_filter = ["kind", "to_status"]
    search_fields = ["instance__instance_id", "instance__owner__email", "kind"]
    list_select_related = ["instance", "actor"]
    date_hierarchy = "created_at"
