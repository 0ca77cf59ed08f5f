from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class TradingState(models.TextChoices):
    """The engine's own trading state, beside the container's status (running ≠ trading)."""

    STARTING = "starting", _("Starting")
    TRADING = "trading", _("Trading")
    PAUSED = "paused", _("Paused by risk control")
    ERROR = "error", _("Not trading")
    NOT_ANSWERING = "not_answering", _("Not answering")
    STOPPED = "stopped", _("Not trading (stopped)")


class Instance(models.Model):
    """One customer instance: the database holds what it should be (desired_state) and what the
    runtime last reported (status); reconcile closes the gap."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        PROVISIONING = "provisioning", _("Provisioning")
        RUNNING = "running", _("Running")
        STOPPED = "stopped", _("Stopped")
        RESTARTING = "restarting", _("Restarting")
        DELETING = "deleting", _("Deleting")
        DELETED = "deleted", _("Deleted")
        FAILED = "failed", _("Failed")
        # Its server does not answer or is drained: nothing is known of the engine, nothing is lost.
        UNREACHABLE = "unreachable", _("Node unreachable")

    class Desired(models.TextChoices):
        RUNNING = "running", _("Running")
        STOPPED = "stopped", _("Stopped")
        DELETED = "deleted", _("Deleted")

    instance_id = models.CharField(max_length=40, unique=True)
    slug = models.CharField(max_length=6, unique=True, help_text="The 6 characters in the id and the URL.")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="instances")
    plan = models.ForeignKey("billing.Plan", on_delete=models.PROTECT, related_name="instances")
    desired_state = models.CharField(max_length=16, choices=Desired.choices, default=Desired.RUNNING)
    # pending: accepted but waiting (e.g. for payment); provisioning: queued or being brought up.
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PROVISIONING, db_index=True)
    healthy = models.BooleanField(null=True, help_text="The engine's own health check; null while unknown.")
    image = models.CharField(max_length=200)
    engine_version = models.CharField(max_length=40, blank=True)
    # Fernet-encrypted secret the proxy sends to the engine (X-QuantMesh-Proxy-Secret).
    proxy_secret_encrypted = models.TextField()
    # The Fernet key under which the engine keeps the exchange keys on its volume (handed to it at
    # start outside the volume), itself encrypted under the portal's key list. Empty: made on demand.
    secrets_key_encrypted = models.TextField(blank=True, default="")
    idempotency_key = models.CharField(max_length=128, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    status_changed_at = models.DateTimeField(default=timezone.now)
    restart_count = models.PositiveIntegerField(default=0, help_text="Restarts by reconcile after crashes.")
    # Set by enterprise autoscaling; empty: the plan's limits.
    cpu_limit_scaled = models.DecimalField(max_digits=5, decimal_places=2, null=True, blank=True)
    memory_limit_mb_scaled = models.PositiveIntegerField(null=True, blank=True)
    next_restart_at = models.DateTimeField(null=True, blank=True, help_text="Back-off: no automatic restart before.")
    last_exit_code = models.IntegerField(null=True, blank=True)
    last_failure_reason = models.CharField(max_length=200, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    data_retained_until = models.DateTimeField(null=True, blank=True)
    # The set of servers it runs on (settings.QM_REGIONS); "" on a one-server platform.
    region = models.CharField(max_length=40, blank=True, default="")
    # A move to another region in progress or failed: {"to", "step", "error"}; {} when none.
    migration = models.JSONField(default=dict, blank=True)
    # What the engine itself says it is doing (its /api/status), as last read by the portal.
    trading_state = models.CharField(max_length=16, choices=TradingState.choices, blank=True)
    trading_cause = models.CharField(max_length=40, blank=True, help_text="e.g. keys_refused, risk rule names.")
    trading_reason = models.CharField(max_length=300, blank=True, help_text="The engine's reason, in its words.")
    trading_checked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="instance_unique_idempotency_key_per_owner",
            )
        ]
        indexes = [models.Index(fields=["owner", "status"])]

    def __str__(self) -> str:
        return self.instance_id

    @property
    def cpu_limit(self) -> float:
        return float(self.cpu_limit_scaled if self.cpu_limit_scaled is not None else self.plan.cpu_limit)

    @property
    def memory_limit_mb(self) -> int:
        return self.memory_limit_mb_scaled if self.memory_limit_mb_scaled is not None else self.plan.memory_limit_mb

    @property
    def url(self) -> str:
        return settings.QM_INSTANCE_URL_TEMPLATE.format(slug=self.slug, domain=settings.QM_BASE_DOMAIN)

    @property
    def settled(self) -> bool:
        """Whether the runtime has caught up with the desired state (or given up: failed)."""
        wanted = {
            self.Desired.RUNNING: {self.Status.RUNNING, self.Status.FAILED},
            self.Desired.STOPPED: {self.Status.STOPPED, self.Status.FAILED},
            self.Desired.DELETED: {self.Status.DELETED},
        }[self.desired_state]
        return self.status in wanted


class InstanceEvent(models.Model):
    """Audit row for every change of an instance, by a person or by the platform (actor null)."""

    class Kind(models.TextChoices):
        """Every kind of event, one vocabulary for those who record them and those who listen (alerts).
        The codes are what the API and the websocket show; the labels are for staff (admin)."""

        # Requests (API, console, admin, billing's enforcement).
        CREATED = "created"
        START_REQUESTED = "start_requested"
        STOP_REQUESTED = "stop_requested"
        STOPPED_BY_PLAN = "stopped_by_plan"
        RESTART_REQUESTED = "restart_requested"
        DELETE_REQUESTED = "delete_requested"
        PLAN_CHANGED = "plan_changed"
        MIGRATION_REQUESTED = "migration_requested"
        RESTORE_REQUESTED = "restore_requested"
        # What the worker did (converge, migration, restore).
        RUNNING = "running"
        STOPPED = "stopped"
        DELETED = "deleted"
        FAILED = "failed"
        MIGRATED = "migrated"
        MIGRATION_FAILED = "migration_failed"
        RESTORE_STARTED = "restore_started"
        RESTORED = "restored"
        BACKUP_CREATED = "backup_created"
        BACKUP_FAILED = "backup_failed"
        AUTOSCALED = "autoscaled"
        # What reconcile saw.
        CRASHED = "crashed"
        CRASH_LOOP = "crash_loop"
        UNHEALTHY = "unhealthy"
        NODE_UNREACHABLE = "node_unreachable"
        NODE_BACK = "node_back"
        # What the engine says it is doing.
        TRADING_ERROR = "trading_error"
        TRADING_PAUSED = "trading_paused"
        TRADING_RESUMED = "trading_resumed"
        RISK_TRIGGERED = "risk_triggered"
        # Custom domains.
        DOMAIN_ADDED = "domain_added"
        DOMAIN_VERIFIED = "domain_verified"
        DOMAIN_WITHDRAWN = "domain_withdrawn"
        DOMAIN_REMOVED = "domain_removed"
        DOMAIN_EXPIRED = "domain_expired"
        DOMAIN_ROUTED = "domain_routed"
        DOMAIN_UNROUTED = "domain_unrouted"
        # The strategy advisor and the adaptive strategy (strategies app).
        ADVICE_REQUESTED = "advice_requested"
        ADVICE_FINISHED = "advice_finished"
        ADVICE_FAILED = "advice_failed"
        STRATEGY_APPLIED = "strategy_applied"
        STRATEGY_REVERTED = "strategy_reverted"

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    kind = models.CharField(max_length=40, choices=Kind.choices)
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["instance", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.instance_id} {self.kind} {self.from_status}→{self.to_status}"


class CustomDomain(models.Model):
    """A customer's own host name for an instance (professional and above): a CNAME to the instance
    host, verified by a DNS lookup before Traefik routes it and asks Let's Encrypt for its certificate."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="domains")
    domain = models.CharField(max_length=253, unique=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    # Set while the owner's plan does not include custom domains: kept, but not routed.
    suspended_at = models.DateTimeField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["domain"]

    def __str__(self) -> str:
        return self.domain


class EngineSample(models.Model):
    """One reading of a running engine (every QM_ENGINE_SAMPLE_SECONDS): PnL, prices, positions and
    resource use, kept QM_ENGINE_HISTORY_DAYS for the console's charts."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="samples")
    at = models.DateTimeField(default=timezone.now)
    realized_pnl = models.FloatField(default=0)
    unrealized_pnl = models.FloatField(default=0)
    cpu_usage = models.FloatField(null=True, blank=True)
    memory_usage = models.FloatField(null=True, blank=True)
    # {symbol: {"price": p, "position": q}}
    symbols = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at"]
        indexes = [models.Index(fields=["instance", "at"]), models.Index(fields=["at"])]

    def __str__(self) -> str:
        return f"{self.instance_id} {self.at:%Y-%m-%d %H:%M:%S}"
