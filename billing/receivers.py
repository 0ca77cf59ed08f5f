"""Billing listening to the rest of the product: a new user who came through a referral link."""

from __future__ import annotations

from allauth.account.signals import user_signed_up
from django.dispatch import receiver

from .services import referral_record

REFERRAL_SESSION_KEY = "qm_referral_code"


@receiver(user_signed_up)
def record_referral(sender, request, user, **kwargs) -> None:
    code = request.session.pop(REFERRAL_SESSION_KEY, None) if request is not None else None
    if code:
        referral_record(referred=user, code=code)
