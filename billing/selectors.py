"""What a user may do: the one place other apps ask. Nobody outside billing reads subscriptions."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from .models import Plan, Subscription

ENTITLED_STATUSES = (Subscription.Status.TRIALING, Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE)


def plan_list() -> QuerySet[Plan]:
    return Plan.objects.filter(is_active=True).order_by("tier")


def plan_get(*, code: str) -> Plan | None:
    return Plan.objects.filter(code=code, is_active=True).first()


@dataclass(frozen=True)
class Entitlements:
    plan: Plan | None

    @property
    def max_instances(self) -> int | None:
        """How many instances the user may have; None means unlimited, 0 means none."""
        if self.plan is None:
            return 0
        return self.plan.max_instances

    def allows_plan(self, plan: Plan) -> bool:
        return self.plan is not None and self.plan.includes(plan)

    def has_feature(self, feature: str) -> bool:
        return self.plan is not None and feature in self.plan.features


def entitlements_for(user) -> Entitlements:
    subscription = Subscription.objects.select_related("plan").filter(user=user, status__in=ENTITLED_STATUSES).first()
    return Entitlements(plan=subscription.plan if subscription else None)
