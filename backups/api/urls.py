from django.urls import path

from . import views

urlpatterns = [
    path("instances/<str:instance_id>/backups", views.BackupListApi.as_view(), name="backups-list"),
    path(
        "instances/<str:instance_id>/backups/<str:backup_id>/download",
        views.BackupDownloadApi.as_view(),
        name="backups-download",
    ),
    path(
        "instances/<str:instance_id>/backups/<str:backup_id>/restore",
        views.BackupRestoreApi.as_view(),
        name="backups-restore",
    ),
]
