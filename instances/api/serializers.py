from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from instances.presentation import reason_text
from instances.trading import trading_view
from quantmesh.api.serializers import StrictInputSerializer


class InstanceCreateInputSerializer(StrictInputSerializer):
    plan = serializers.CharField(max_length=32)
    region = serializers.CharField(max_length=40, required=False, help_text="A region code (GET /api/saas/regions).")


class InstanceMigrateInputSerializer(StrictInputSerializer):
    region = serializers.CharField(max_length=40)


def _iso(value):
    return value.isoformat().replace("+00:00", "Z") if value else None


class InstanceOutputSerializer(serializers.Serializer):
    """The instance as the manual shows it, plus lifecycle detail.

    The declared fields document the schema; to_representation builds the same keys directly,
    because DRF's per-field machinery was 70% of the instance list's time (50 instances)."""

    instance_id = serializers.CharField()
    status = serializers.CharField()
    plan = serializers.CharField(source="plan.code")
    url = serializers.CharField()
    port = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    desired_state = serializers.CharField()
    healthy = serializers.BooleanField(allow_null=True)
    started_at = serializers.DateTimeField(allow_null=True)
    stopped_at = serializers.DateTimeField(allow_null=True)
    restart_count = serializers.IntegerField()
    last_failure_reason = serializers.CharField(allow_blank=True)
    last_exit_code = serializers.IntegerField(allow_null=True)
    image = serializers.CharField()
    region = serializers.CharField(allow_blank=True)
    migration = serializers.DictField(help_text='A move in progress or failed: {"to", "from", "step", "error"}.')
    trading_state = serializers.ChoiceField(
        choices=["starting", "trading", "paused", "error", "not_answering", "stopped"],
        help_text="What the engine is doing, beside the container's `status`: running is not trading.",
    )
    trading_cause = serializers.CharField(
        allow_blank=True,
        help_text="error: config_error, keys_refused, exchange_unreachable, storage_error, engine_not_answering; "
        "paused: the risk rules (rapid_decline, max_position, stop_loss, daily_loss_limit).",
    )
    trading_reason = serializers.CharField(allow_blank=True, help_text="The engine's reason, in its words.")
    trading_reason_text = serializers.CharField(allow_blank=True, help_text="The reason in the request's language.")
    trading_checked_at = serializers.DateTimeField(allow_null=True, help_text="When the portal last asked the engine.")

    def to_representation(self, instance) -> dict:
        trading_state, trading_cause, trading_reason = trading_view(instance)
        return {
            "instance_id": instance.instance_id,
            "status": instance.status,
            # A listing brings the code alone (selectors.instance_list_with_plan_code).
            "plan": getattr(instance, "plan_code", None) or instance.plan.code,
            "url": instance.url,
            "port": settings.QM_INSTANCE_PORT,
            "created_at": _iso(instance.created_at),
            "desired_state": instance.desired_state,
            "healthy": instance.healthy,
            "started_at": _iso(instance.started_at),
            "stopped_at": _iso(instance.stopped_at),
            "restart_count": instance.restart_count,
            "last_failure_reason": instance.last_failure_reason,
            "last_exit_code": instance.last_exit_code,
            "image": instance.image,
            "region": instance.region,
            "migration": instance.migration,
            "trading_state": trading_state,
            "trading_cause": trading_cause,
            "trading_reason": trading_reason,
            "trading_reason_text": reason_text(trading_reason),
            "trading_checked_at": _iso(instance.trading_checked_at),
        }


class RegionOutputSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()


class LogsQuerySerializer(StrictInputSerializer):
    lines = serializers.IntegerField(min_value=1, max_value=10000, default=1000)


class LogsOutputSerializer(serializers.Serializer):
    instance_id = serializers.CharField()
    lines = serializers.ListField(child=serializers.CharField())


class MetricsOutputSerializer(serializers.Serializer):
    instance_id = serializers.CharField()
    cpu_usage = serializers.FloatField(help_text="Fraction of the CPU limit in use.")
    memory_usage = serializers.FloatField(help_text="Fraction of the memory limit in use.")
    cpu_limit = serializers.FloatField(help_text="CPU cores.")
    memory_limit = serializers.IntegerField(help_text="MB.")
    uptime = serializers.IntegerField(help_text="Seconds since the container started.")
    last_active = serializers.DateTimeField(allow_null=True, help_text="The engine's last heartbeat.")


class TradingQuerySerializer(StrictInputSerializer):
    days = serializers.FloatField(min_value=0.01, max_value=7, default=1, help_text="History to include (at most 7).")


class TradingOutputSerializer(serializers.Serializer):
    instance_id = serializers.CharField()
    status = serializers.CharField()
    trading_state = serializers.CharField()
    trading_cause = serializers.CharField(allow_blank=True)
    trading_reason = serializers.CharField(allow_blank=True)
    trading_reason_text = serializers.CharField(allow_blank=True, help_text="The reason in the request's language.")
    symbols = serializers.ListField(
        child=serializers.DictField(),
        help_text="Live, per symbol: price, position, realized_pnl, unrealized_pnl, fees, orders, fills.",
    )
    history = serializers.DictField(help_text="Columns: time (unix s), realized_pnl, unrealized_pnl, cpu_usage, …")


class DomainInputSerializer(StrictInputSerializer):
    domain = serializers.CharField(max_length=253, help_text="e.g. trading.example.com")


class DomainOutputSerializer(serializers.Serializer):
    domain = serializers.CharField()
    cname_target = serializers.CharField(help_text="Create a CNAME record from the domain to this host.")
    verified = serializers.BooleanField()
    verified_at = serializers.DateTimeField(allow_null=True)
    last_checked_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField(help_text="Why the last DNS check failed (empty when it passed).")


class EventOutputSerializer(serializers.Serializer):
    """Something that happened to an instance (instances.events.event_view builds it)."""

    id = serializers.IntegerField()
    instance_id = serializers.CharField()
    kind = serializers.CharField(
        help_text=(
            "created, start_requested, stop_requested, restart_requested, delete_requested, running, stopped, "
            "deleted, crashed, unhealthy, failed (detail.reason says why), risk_triggered (detail.symbols), "
            "autoscaled, backup_created, backup_failed, restore_requested, restored, plan_changed, domain_*"
        )
    )
    from_status = serializers.CharField(allow_blank=True)
    to_status = serializers.CharField(allow_blank=True)
    actor = serializers.ChoiceField(choices=["owner", "platform", "support"])
    detail = serializers.DictField()
    created_at = serializers.DateTimeField()
