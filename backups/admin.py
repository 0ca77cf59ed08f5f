from django.contrib import admin

from .models import Backup


@admin.register(Backup)
class BackupAdmin(admin.ModelAdmin):
    list_display = ["backup_id", "instance", "owner", "kind", "status", "size_bytes", "created_at"]
    list_filter = ["kind", "status"]
    search_fields = ["backup_id", "instance__instance_id", "owner__email"]
    list_select_related = ["instance", "owner"]
    readonly_fields = [f.name for f in Backup._meta.fields]

    def has_add_permission(self, request):
        return False
