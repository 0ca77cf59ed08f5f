"""Backups of an instance: list, take one now, download, restore (same instance or a new one)."""

from __future__ import annotations

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from backups import selectors, services
from backups.models import Backup
from instances import services as instance_services
from quantmesh.api import pagination
from quantmesh.api.serializers import ErrorSerializer
from quantmesh.errors import ServiceError

from .serializers import BackupOutputSerializer, BackupRestoreInputSerializer, BackupRestoreOutputSerializer


def _instance(request, instance_id: str):
    instance = selectors.backup_instance_get(owner=request.user, instance_id=instance_id)
    if instance is None:
        raise ServiceError(code="not_found", message=f"No instance {instance_id}.", status=404)
    return instance


def _backup(request, instance_id: str, backup_id: str) -> Backup:
    backup = selectors.backup_get(instance=_instance(request, instance_id), backup_id=backup_id)
    if backup is None:
        raise ServiceError(code="not_found", message=f"No backup {backup_id} of {instance_id}.", status=404)
    return backup


class BackupListApi(APIView):
    @extend_schema(
        parameters=pagination.PARAMETERS, responses=BackupOutputSerializer(many=True), operation_id="backups_list"
    )
    def get(self, request, instance_id: str):
        page = pagination.cursor_page(request, selectors.backup_list(instance=_instance(request, instance_id)))
        return Response(BackupOutputSerializer(page.items, many=True).data, headers=page.headers)

    @extend_schema(request=None, responses={201: BackupOutputSerializer}, operation_id="backups_create")
    def post(self, request, instance_id: str):
        instance = _instance(request, instance_id)
        if instance.status in (instance.Status.DELETED, instance.Status.DELETING):
            raise ServiceError(code="instance_deleted", message="A deleted instance cannot be backed up.", status=409)
        backup = services.backup_create(instance=instance, kind=Backup.Kind.MANUAL)
        if backup.status != Backup.Status.OK:
            raise ServiceError(code="backup_failed", message=f"The backup failed: {backup.error}", status=503)
        return Response(BackupOutputSerializer(backup).data, status=201)


class BackupDownloadApi(APIView):
    @extend_schema(
        responses={
            (200, "application/gzip"): OpenApiResponse(OpenApiTypes.BINARY, description="the backup file (.tar.gz)"),
            409: OpenApiResponse(ErrorSerializer, description="the backup failed, or its file is missing or damaged"),
        },
        operation_id="backups_download",
    )
    def get(self, request, instance_id: str, backup_id: str):
        backup = _backup(request, instance_id, backup_id)
        return FileResponse(
            services.backup_open(backup=backup),
            as_attachment=True,
            filename=f"{backup.instance.instance_id}-{backup.backup_id}.tar.gz",
            content_type="application/gzip",
        )


class BackupRestoreApi(APIView):
    @extend_schema(
        request=BackupRestoreInputSerializer,
        responses={202: BackupRestoreOutputSerializer},
        operation_id="backups_restore",
    )
    def post(self, request, instance_id: str, backup_id: str):
        backup = _backup(request, instance_id, backup_id)  # another tenant's id: 404 before anything else
        data = BackupRestoreInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        target = None
        if data.validated_data["into"] == "new":
            services.backup_read(backup=backup)  # verify before creating anything
            target = instance_services.instance_create(owner=request.user, plan_code=backup.instance.plan.code)
        target = services.backup_restore(backup=backup, target=target, actor=request.user)
        return Response(
            BackupRestoreOutputSerializer(
                {"backup_id": backup.backup_id, "instance_id": target.instance_id, "status": "restoring"}
            ).data,
            status=202,
        )
