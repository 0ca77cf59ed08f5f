"""Billing listening to the rest of the product: a new user who came through a referral link; and to
its own writes: a subscription or plan saved or deleted makes memoised entitlements stale, in this
process at once and in every process when it commits."""

from __future__ import annotations

from allauth.account.signals import user_signed_up
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from . import entitlements_cache
from .models import Plan, Subscription
from .selectors import entitlements_forget
from .services import referral_record

REFERRAL_SESSION_KEY = "qm_referral_code"


@receiver(user_signed_up)
def record_referral(sender, request, user, **kwargs) -> None:
    code = request.session.pop(REFERRAL_SESSION_KEY, None) if request is not None else None
    if code:
        referral_record(referred=user, code=code)


@receiver([post_save, post_delete], sender=Subscription)
@receiver([post_save, post_delete], sender=Plan)
def forget_entitlements(sender, instance, **kwargs) -> None:
    entitlements_forget()
    entitlements_cache.bump_on_commit(user_id=instance.user_id if sender is Subscription else None)
