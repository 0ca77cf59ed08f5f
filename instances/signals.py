"""What instances tell the rest of the product, without knowing who listens.

- `instance_events_recorded(events)`: InstanceEvents (crashed, unhealthy, failed, ...) were committed,
  one or many at once (a reconcile pass records thousands in one transaction).
- `data_changing(instance, reason)`: sent by the worker just before the instance's data is put at
  risk ("delete", "plan_change", "image_upgrade"), while the engine still runs: receivers may copy it.
"""

from django.dispatch import Signal

data_changing = Signal()
instance_events_recorded = Signal()
