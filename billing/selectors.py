"""What a user may do: the one place other apps ask. Nobody outside billing reads subscriptions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import QuerySet
from django.utils import timezone

from .models import Plan, Subscription

TRIAL_DAYS = 7
TRIAL_PLAN = "personal"
ENTITLED_STATUSES = (Subscription.Status.TRIALING, Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE)


def plan_list() -> QuerySet[Plan]:
    return Plan.objects.filter(is_active=True).order_by("tier")


def plan_get(*, code: str) -> Plan | None:
    return Plan.objects.filter(code=code, is_active=True).first()


@dataclass(frozen=True)
class Entitlements:
    plan: Plan | None
    trial: bool = False  # the no-card trial: one paper-trading instance for TRIAL_DAYS

    @property
    def max_instances(self) -> int | None:
        """How many instances the user may have; None means unlimited, 0 means none."""
        if self.plan is None:
            return 0
        return 1 if self.trial else self.plan.max_instances

    @property
    def paper_only(self) -> bool:
        return self.trial

    def allows_plan(self, plan: Plan) -> bool:
        return self.plan is not None and self.plan.includes(plan)

    def has_feature(self, feature: str) -> bool:
        return self.plan is not None and not self.trial and feature in self.plan.features


def subscription_get(*, user) -> Subscription | None:
    return Subscription.objects.select_related("plan").filter(user=user).first()


def trial_ends_at(user):
    return user.date_joined + timedelta(days=TRIAL_DAYS)


def entitlements_for(user) -> Entitlements:
    subscription = subscription_get(user=user)
    if subscription is not None and subscription.status in ENTITLED_STATUSES:
        return Entitlements(plan=subscription.plan)
    if subscription is None and timezone.now() < trial_ends_at(user):
        return Entitlements(plan=plan_get(code=TRIAL_PLAN), trial=True)
    return Entitlements(plan=None)


def subscription_view(*, user) -> dict:
    """The user's plan as the API shows it: a subscription, the trial, or nothing."""
    rights = entitlements_for(user)
    subscription = subscription_get(user=user)
    plan = rights.plan
    limits = None
    if plan is not None:
        limits = {
            "max_instances": rights.max_instances,
            "cpu_limit": float(plan.cpu_limit),
            "memory_limit": plan.memory_limit_mb,
            "max_trading_pairs": plan.max_trading_pairs,
            "paper_only": rights.paper_only,
        }
    active = subscription is not None and not rights.trial and rights.plan is not None
    return {
        "plan": plan.code if plan else None,
        "status": subscription.status if subscription else ("trialing" if rights.trial else "none"),
        "interval": subscription.interval if subscription else None,
        "provider": subscription.provider if subscription else None,
        "current_period_end": subscription.current_period_end if active else None,
        "cancel_at_period_end": bool(subscription and subscription.cancel_at_period_end),
        "trial": rights.trial,
        "trial_ends_at": trial_ends_at(user) if rights.trial else None,
        "limits": limits,
    }
