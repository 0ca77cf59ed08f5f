"""What a user may do: the one place other apps ask. Nobody outside billing reads subscriptions."""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone
from djstripe.models import Invoice

from . import entitlements_cache
from .models import Plan, Referral, Subscription
from .money import money, money_display

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
    return Subscription.objects.select_related("plan", "pending_plan").filter(user=user).first()


def trial_ends_at(user):
    return user.date_joined + timedelta(days=TRIAL_DAYS)


def grace_ends_at(subscription: Subscription):
    """When an unpaid subscription stops granting anything (None: it is not unpaid)."""
    if subscription.status != Subscription.Status.PAST_DUE or subscription.past_due_since is None:
        return None
    return subscription.past_due_since + settings.QM_PAYMENT_GRACE


class _Generation:
    """Bumped by every subscription or plan write in this process (billing/receivers.py)."""

    value = 0


# user id -> (generation, Entitlements) while a request is in flight (billing.middleware); None outside one.
_request_memo: ContextVar[dict | None] = ContextVar("qm_entitlements_memo", default=None)


def entitlements_forget() -> None:
    """Every memoised Entitlements in this process is stale from now on (other processes learn it
    when the write commits: billing/receivers.py)."""
    _Generation.value += 1
    entitlements_cache.forget_local()


@contextmanager
def entitlements_memo():
    """Within this block (a request) entitlements are read once per user: the view, the limits and the
    page all ask. A subscription or plan written meanwhile, by this request or another thread, is seen
    by the next call. Between requests billing/entitlements_cache.py keeps them while they are current."""
    token = _request_memo.set({})
    try:
        yield
    finally:
        _request_memo.reset(token)


def entitlements_for(user) -> Entitlements:
    memo = _request_memo.get()
    if memo is None or user.pk is None:
        return _entitlements_read(user)[0]
    generation = _Generation.value
    cached = memo.get(user.pk)
    if cached is not None and cached[0] == generation:
        return cached[1]
    rights = _entitlements_across_requests(user)
    memo[user.pk] = (generation, rights)
    return rights


def _entitlements_across_requests(user) -> Entitlements:
    # Inside a transaction the database may show writes that are not committed yet (and may never be):
    # such a read is not kept for other requests.
    if not entitlements_cache.enabled() or connection.in_atomic_block:
        return _entitlements_read(user)[0]
    current = entitlements_cache.current_versions(user.pk)  # before the database: quantmesh/versions.py
    if current is None:
        return _entitlements_read(user)[0]
    rights = entitlements_cache.lookup(user.pk, current)
    if rights is None:
        rights, ends_at = _entitlements_read(user)
        valid = None if ends_at is None else (ends_at - timezone.now()).total_seconds()
        entitlements_cache.store(user.pk, current, rights, valid_seconds=valid)
    return rights


def _entitlements_read(user) -> tuple[Entitlements, datetime | None]:
    """The user's rights, and when they end by the clock alone (None: only a write changes them)."""
    subscription = subscription_get(user=user)
    if subscription is not None and subscription.status in ENTITLED_STATUSES:
        grace_end = grace_ends_at(subscription)
        if grace_end is not None and grace_end <= timezone.now():
            return Entitlements(plan=None), None
        return Entitlements(plan=subscription.plan), grace_end
    if subscription is None and timezone.now() < trial_ends_at(user):
        return Entitlements(plan=plan_get(code=TRIAL_PLAN), trial=True), trial_ends_at(user)
    return Entitlements(plan=None), None


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
        "payment_grace_ends_at": grace_ends_at(subscription) if subscription else None,
        "trial": rights.trial,
        "trial_ends_at": trial_ends_at(user) if rights.trial else None,
        "limits": limits,
        "pending_change": (
            {
                "plan": subscription.pending_plan.code,
                "interval": subscription.pending_interval,
                "effective": subscription.pending_effective,
                "invoice_url": subscription.pending_invoice_url or None,
            }
            if subscription is not None and subscription.pending_plan_id
            else None
        ),
    }


def _invoice_row(invoice) -> dict:
    data = invoice.stripe_data
    currency = data.get("currency") or "usd"
    return {
        "id": invoice.id,
        "number": data.get("number") or invoice.id,
        "created": invoice.created,
        "status": data.get("status", ""),
        "currency": currency.lower(),
        "amount_due": int(data.get("amount_due") or 0),
        "amount_paid": int(data.get("amount_paid") or 0),
        "total": int(data.get("total") or 0),
        "tax": sum(int(t.get("amount") or 0) for t in data.get("total_taxes") or []),
        "url": data.get("hosted_invoice_url") or "",
        "pdf": data.get("invoice_pdf") or "",
        "display_amount": money_display(int(data.get("amount_due") or 0), currency),
    }


def invoice_queryset(*, user):
    """The user's Stripe invoices as dj-stripe synced them from the webhooks."""
    return Invoice.objects.filter(customer__subscriber=user)


def invoice_rows(invoices) -> list[dict]:
    """Invoices for display and the API; amounts in the currency's minor unit."""
    return [_invoice_row(i) for i in invoices]


def invoice_list(*, user, limit: int = 24) -> list[dict]:
    """The newest invoices, for display."""
    return invoice_rows(invoice_queryset(user=user).order_by("-created")[:limit])


def open_invoice_url(*, user) -> str:
    """Where the user pays what they owe: the newest open invoice's hosted page ("" if none is known)."""
    open_invoices = [row for row in invoice_list(user=user, limit=12) if row["status"] == "open" and row["url"]]
    return open_invoices[0]["url"] if open_invoices else ""


def referral_summary(*, user) -> dict:
    """The user's referral code and what it earned (credits taken back excluded), per currency."""
    referrals = Referral.objects.filter(referrer=user)
    credited = referrals.filter(credited_at__isnull=False, credit_cents__gt=0, clawed_back_at__isnull=True)
    totals: dict[str, int] = {}
    for referral in credited:
        totals[referral.currency] = totals.get(referral.currency, 0) + referral.credit_cents
    return {
        "referred": referrals.count(),
        "credited": credited.count(),
        "credits": [
            {**money(amount, currency), "display": money_display(amount, currency)}
            for currency, amount in sorted(totals.items())
        ],
    }
