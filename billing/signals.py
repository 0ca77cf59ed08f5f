"""What billing tells the rest of the product, without knowing who listens.

- `plan_change_check(user, plan)`: receivers return a list of problems ({"instance_id", "reason"})
  that keep the user's resources from fitting `plan`; any problem refuses the change.
- `plan_changed(user, plan)`: the user's plan is now `plan` (resources may follow it).
- `payment_failed(user)`: a payment failed; the plan runs on for the grace period.
- `entitlement_lost(user)`: the user may no longer run anything (trial over, canceled, unpaid).
"""

from django.dispatch import Signal

plan_change_check = Signal()
plan_changed = Signal()
entitlement_lost = Signal()
payment_failed = Signal()
