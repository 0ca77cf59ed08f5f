"""Every state change of an instance, and the public face of the instances app for writes: the API,
console, admin and tasks, and other apps (backups, alerts, billing's hooks), call what is named here.

- lifecycle: the request side (create, start, stop, restart, delete, move, change plan, follow the plan);
- converge: the worker side (drive the runtime to the desired state, apply limits, move, restore files);
- reconcile: the periodic pass comparing the database with the runtime;
- autoscaling: enterprise limits following use;
- domains: custom domains.
Reads are in instances.selectors.
"""

from ..events import instance_event_record
from ..runtime.base import BackendError
from ..trading import engine_status_refresh
from .converge import (
    failure_reason,
    instance_apply_limits,
    instance_converge,
    instance_files_restore,
    instance_mark,
    instance_migrate_run,
    instance_platform_refresh,
    instance_secrets_key,
    instance_secrets_reencrypt,
    instance_spec,
    wait_up,
)
from .lifecycle import (
    instance_change_plan,
    instance_create,
    instance_delete,
    instance_migrate,
    instance_restart,
    instance_start,
    instance_stop,
    instances_enforce_plan,
)

__all__ = [
    "BackendError",
    "engine_status_refresh",
    "failure_reason",
    "instance_apply_limits",
    "instance_change_plan",
    "instance_converge",
    "instance_platform_refresh",
    "instance_create",
    "instance_delete",
    "instance_event_record",
    "instance_files_restore",
    "instance_mark",
    "instance_migrate",
    "instance_migrate_run",
    "instance_restart",
    "instance_secrets_key",
    "instance_secrets_reencrypt",
    "instance_spec",
    "instance_start",
    "instance_stop",
    "instances_enforce_plan",
    "wait_up",
]
