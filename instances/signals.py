"""What instances tell the rest of the product, without knowing who listens.

- `instance_event_recorded(event)`: an InstanceEvent (crashed, unhealthy, failed, ...) was committed.
- `data_changing(instance, reason)`: sent by the worker just before the instance's data is put at
  risk ("delete", "plan_change", "image_upgrade"), while the engine still runs: receivers may copy it.
"""

from django.dispatch import Signal

data_changing = Signal()
instance_event_recorded = Signal()
