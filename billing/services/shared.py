"""What every billing service uses: the audit row, enforcement and customer notices on commit,
staff alerts, and whether Stripe is the payment provider."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import mail_admins
from django.db import transaction

from quantmesh.errors import ServiceError

from .. import stripe_gateway
from ..models import BillingEvent, Subscription
from ..signals import customer_notice, entitlements_changed

logger = logging.getLogger(__name__)


def billing_event_record(*, user, kind: str, source: str, **detail) -> BillingEvent:
    return BillingEvent.objects.create(user=user, kind=kind, source=source, detail=detail)


def entitlements_enforce(*, user, reason: str, plan_changed: bool = False) -> None:
    """What the user may run changed: once it is committed, their instances and domains are brought
    within it (the instances app's one enforcement path listens)."""
    transaction.on_commit(
        lambda: entitlements_changed.send(sender=Subscription, user=user, reason=reason, plan_changed=plan_changed)
    )


def operator_alert(*, subject: str, message: str) -> None:
    """Something only staff can fix (ADMINS by e-mail, and the error log)."""
    logger.error("%s: %s", subject, message)
    mail_admins(f"Billing: {subject}", message, fail_silently=True)


def customer_notify(*, user, subject: str, message: str) -> None:
    transaction.on_commit(
        lambda: customer_notice.send(sender=Subscription, user=user, subject=subject, message=message)
    )


def stripe_enabled() -> bool:
    return settings.QM_BILLING_PROVIDER == "stripe"


def gateway_error(error: stripe_gateway.StripeUnavailable) -> ServiceError:
    return ServiceError(
        code="payment_provider_unavailable",
        message=f"Stripe could not complete the request ({error}); nothing was changed, try again shortly.",
        status=503,
    )
