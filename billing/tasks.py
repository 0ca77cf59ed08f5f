"""Thin Celery tasks of billing."""

from celery import shared_task

from . import services


@shared_task
def expire_subscriptions() -> int:
    return services.subscriptions_expire()


@shared_task
def reconcile_subscriptions() -> dict:
    return services.subscriptions_reconcile()


@shared_task
def dunning_remind() -> int:
    return services.dunning_remind()
