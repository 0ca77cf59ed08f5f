from __future__ import annotations

from rest_framework import serializers

from quantmesh.api.serializers import StrictInputSerializer


class BackupOutputSerializer(serializers.Serializer):
    backup_id = serializers.CharField()
    instance_id = serializers.CharField(source="instance.instance_id")
    kind = serializers.CharField(help_text="daily, manual, before_delete, before_plan_change, before_upgrade")
    status = serializers.CharField(help_text="ok or failed")
    size_bytes = serializers.IntegerField()
    sha256 = serializers.CharField()
    error = serializers.CharField()
    created_at = serializers.DateTimeField()


class BackupRestoreInputSerializer(StrictInputSerializer):
    into = serializers.ChoiceField(
        choices=["same", "new"], default="same", help_text="same: this instance (stopped, restored, started); new"
    )


class BackupRestoreOutputSerializer(serializers.Serializer):
    backup_id = serializers.CharField()
    instance_id = serializers.CharField(help_text="The instance the backup is restored into.")
    status = serializers.CharField()
