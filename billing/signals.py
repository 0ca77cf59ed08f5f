"""What billing tells the rest of the product, without knowing who listens.

- `plan_change_check(user, plan)`: receivers return a list of problems ({"instance_id", "reason"})
  that keep the user's resources from fitting `plan`; any problem refuses the change.
- `entitlements_changed(user, reason, plan_changed)`: what the user may run changed (a plan started,
  changed or ended, from any source); receivers bring the user's resources within
  `entitlements_for(user)` (with `plan_changed`, resources take the new plan's limits, up or down).
  Sent once the change is committed.
- `payment_failed(user)`: a payment failed; the plan runs on for the grace period.
- `customer_notice(user, subject, message)`: something about their billing the customer must
  hear about (a reminder to pay, a payment to confirm, instances stopped by the plan).
"""

from django.dispatch import Signal

plan_change_check = Signal()
entitlements_changed = Signal()
payment_failed = Signal()
customer_notice = Signal()
