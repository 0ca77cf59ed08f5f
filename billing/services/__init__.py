"""State changes of billing, by concern: the plan catalogue (`plans`), the local copy of Stripe's
subscriptions (`stripe_sync`), what users and time do to subscriptions (`subscriptions`), Stripe's
events (`stripe_events`) and referrals (`referrals`). Other apps and billing's views import from
here: this is billing's public face for writes (reads are in billing.selectors)."""

from .plans import plan_catalogue_sync, plans_stripe_sync, stripe_webhook_endpoint_ensure
from .referrals import (
    referral_claw_back,
    referral_code_for,
    referral_credit,
    referral_record,
    referral_same_person,
)
from .shared import billing_event_record, entitlements_enforce, operator_alert
from .stripe_events import checkout_completed, invoice_payment_action_required, invoice_settled
from .stripe_sync import STRIPE_STATUS, plan_for_price, subscription_sync_from_stripe, subscriptions_reconcile
from .subscriptions import (
    dunning_remind,
    subscription_cancel,
    subscription_change_plan,
    subscription_create,
    subscription_grant_local,
    subscriptions_expire,
)

__all__ = [
    "STRIPE_STATUS",
    "billing_event_record",
    "checkout_completed",
    "dunning_remind",
    "entitlements_enforce",
    "invoice_payment_action_required",
    "invoice_settled",
    "operator_alert",
    "plan_catalogue_sync",
    "plan_for_price",
    "plans_stripe_sync",
    "referral_claw_back",
    "referral_code_for",
    "referral_credit",
    "referral_record",
    "referral_same_person",
    "stripe_webhook_endpoint_ensure",
    "subscription_cancel",
    "subscription_change_plan",
    "subscription_create",
    "subscription_grant_local",
    "subscription_sync_from_stripe",
    "subscriptions_expire",
    "subscriptions_reconcile",
]
