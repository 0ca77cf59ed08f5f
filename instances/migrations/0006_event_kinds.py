# The one vocabulary of instance events (InstanceEvent.Kind); codes unchanged, no data migration.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("instances", "0005_merge_parallel_branches"),
    ]

    operations = [
        migrations.AlterField(
            model_name="instanceevent",
            name="kind",
            field=models.CharField(
                choices=[
                    ("created", "Created"),
                    ("start_requested", "Start Requested"),
                    ("stop_requested", "Stop Requested"),
                    ("stopped_by_plan", "Stopped By Plan"),
                    ("restart_requested", "Restart Requested"),
                    ("delete_requested", "Delete Requested"),
                    ("plan_changed", "Plan Changed"),
                    ("migration_requested", "Migration Requested"),
                    ("restore_requested", "Restore Requested"),
                    ("running", "Running"),
                    ("stopped", "Stopped"),
                    ("deleted", "Deleted"),
                    ("failed", "Failed"),
                    ("migrated", "Migrated"),
                    ("migration_failed", "Migration Failed"),
                    ("restore_started", "Restore Started"),
                    ("restored", "Restored"),
                    ("backup_created", "Backup Created"),
                    ("backup_failed", "Backup Failed"),
                    ("autoscaled", "Autoscaled"),
                    ("crashed", "Crashed"),
                    ("crash_loop", "Crash Loop"),
                    ("unhealthy", "Unhealthy"),
                    ("node_unreachable", "Node Unreachable"),
                    ("node_back", "Node Back"),
                    ("trading_error", "Trading Error"),
                    ("trading_paused", "Trading Paused"),
                    ("trading_resumed", "Trading Resumed"),
                    ("risk_triggered", "Risk Triggered"),
                    ("domain_added", "Domain Added"),
                    ("domain_verified", "Domain Verified"),
                    ("domain_withdrawn", "Domain Withdrawn"),
                    ("domain_removed", "Domain Removed"),
                    ("domain_expired", "Domain Expired"),
                    ("domain_routed", "Domain Routed"),
                    ("domain_unrouted", "Domain Unrouted"),
                ],
                max_length=40,
            ),
        ),
    ]
