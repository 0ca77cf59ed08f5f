"""Admin pieces shared by the apps."""

from django.contrib import admin


class AuditLogAdmin(admin.ModelAdmin):
    """Audit trails are read-only, for support staff too: nobody adds, edits or deletes a row."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
