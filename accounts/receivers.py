"""Accounts listening to their own writes: whatever decides whether a bearer token opens an account
makes the tokens and second-factor state kept across requests stale in every process once it
commits (accounts/auth_cache.py)."""

from __future__ import annotations

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django_otp.plugins.otp_totp.models import TOTPDevice

from . import auth_cache
from .models import ApiToken, User


@receiver([post_save, post_delete], sender=User)
def forget_user_auth(sender, instance, **kwargs) -> None:
    auth_cache.bump_on_commit(user_id=instance.pk)


@receiver([post_save, post_delete], sender=ApiToken)
@receiver([post_save, post_delete], sender=TOTPDevice)
def forget_token_or_device_auth(sender, instance, **kwargs) -> None:
    auth_cache.bump_on_commit(user_id=instance.user_id)
