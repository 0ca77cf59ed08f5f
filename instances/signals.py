"""What instances tell the rest of the product, without knowing who listens.

- `data_changing(instance, reason)`: sent by the worker just before the instance's data is put at
  risk ("delete", "plan_change", "image_upgrade"), while the engine still runs: receivers may copy it.
"""

from django.dispatch import Signal

data_changing = Signal()
