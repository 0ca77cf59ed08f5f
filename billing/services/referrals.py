"""Referral links, and the credit a referrer earns on the referred user's first paid invoice."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from djstripe.models import Customer

from .. import stripe_gateway
from ..models import BillingEvent, Referral, ReferralCode
from .shared import billing_event_record, stripe_enabled


def referral_code_for(*, user) -> ReferralCode:
    code = ReferralCode.objects.filter(user=user).first()
    while code is None:
        candidate = secrets.token_urlsafe(6).replace("-", "x").replace("_", "y")
        if not ReferralCode.objects.filter(code=candidate).exists():
            code = ReferralCode.objects.create(user=user, code=candidate)
    return code


def _mailbox(email: str) -> tuple[str, str]:
    """The e-mail's mailbox as a person owns it: lower-case, without a +tag, and for Gmail without dots."""
    local, _, domain = email.lower().strip().rpartition("@")
    local = local.split("+", 1)[0]
    if domain in ("gmail.com", "googlemail.com"):
        local, domain = local.replace(".", ""), "gmail.com"
    return local, domain


def referral_same_person(referrer, referred) -> str:
    """Why `referred` looks like `referrer` themself (empty: it does not), by e-mail: the same
    account, the same mailbox (tags and Gmail dots ignored), or the same e-mail domain unless it is a
    public mail provider's."""
    if referrer.pk == referred.pk:
        return "same account"
    (mine, my_domain), (theirs, their_domain) = _mailbox(referrer.email), _mailbox(referred.email)
    if (mine, my_domain) == (theirs, their_domain):
        return "same mailbox"
    if my_domain == their_domain and my_domain not in settings.QM_REFERRAL_PUBLIC_EMAIL_DOMAINS:
        return f"same e-mail domain ({my_domain})"
    return ""


def referral_record(*, referred, code: str) -> Referral | None:
    """The new user `referred` came through `code`'s link. Unknown codes and self-referrals (see
    `referral_same_person`) are ignored; a refused one leaves an audit row for the link's owner."""
    owner = ReferralCode.objects.filter(code=code).select_related("user").first()
    if owner is None:
        return None
    reason = referral_same_person(owner.user, referred)
    if reason:
        if owner.user_id != referred.pk:
            billing_event_record(
                user=owner.user,
                kind=BillingEvent.Kind.REFERRAL_REFUSED,
                source="system",
                referred=referred.email,
                reason=reason,
            )
        return None
    referral, _ = Referral.objects.get_or_create(referred=referred, defaults={"referrer": owner.user})
    return referral


def _same_card(referral: Referral) -> bool:
    """Whether the referred customer pays with a card the referrer also has (the same person with two
    accounts and two e-mail addresses)."""
    customers = Customer.objects.filter(subscriber__in=[referral.referrer, referral.referred], date_purged__isnull=True)
    by_user = {c.subscriber_id: c.id for c in customers}
    if len(by_user) < 2:
        return False
    mine = stripe_gateway.card_fingerprints(customer_id=by_user[referral.referrer_id])
    return bool(mine & stripe_gateway.card_fingerprints(customer_id=by_user[referral.referred_id]))


def referral_credit(*, referred, amount_paid: int, currency: str, invoice_id: str) -> Referral | None:
    """Credit the referrer once, on the referred user's first paid invoice, unless both pay with the
    same card. Stripe is called outside the lock (the idempotency key makes a retry credit once);
    the row is written afterwards under the lock, re-checked."""
    referral = Referral.objects.select_related("referrer").filter(referred=referred, credited_at__isnull=True).first()
    if referral is None:
        return None
    credit = amount_paid * settings.QM_REFERRAL_CREDIT_PERCENT // 100
    transaction_id = ""
    refused = ""
    if stripe_enabled():
        if _same_card(referral):
            refused, credit = "same card", 0
        else:
            transaction_id = stripe_gateway.customer_balance_adjust(
                user=referral.referrer,
                amount=-credit,
                currency=currency,
                description=f"Referral credit: {referred.email} subscribed",
                idempotency_key=f"qm-referral-{referral.pk}",
            )
    with transaction.atomic():
        referral = Referral.objects.select_for_update().get(pk=referral.pk)
        if referral.credited_at is not None:
            return referral
        referral.credit_cents, referral.currency, referral.credited_at = credit, currency, timezone.now()
        referral.stripe_balance_transaction_id, referral.credit_invoice_id = transaction_id, invoice_id
        referral.save(
            update_fields=[
                "credit_cents",
                "currency",
                "credited_at",
                "stripe_balance_transaction_id",
                "credit_invoice_id",
            ]
        )
        if refused:
            billing_event_record(
                user=referral.referrer,
                kind=BillingEvent.Kind.REFERRAL_REFUSED,
                source="stripe",
                referred=referred.email,
                reason=refused,
            )
        else:
            billing_event_record(
                user=referral.referrer,
                kind=BillingEvent.Kind.REFERRAL_CREDITED,
                source="stripe" if stripe_enabled() else "system",
                amount=credit,
                currency=currency,
                referred=referred.email,
            )
    return referral


def referral_claw_back(*, referred, reason: str, charge_id: str) -> Referral | None:
    """The referred customer's payment was refunded or disputed: the referrer's credit is taken back
    (a debit on their Stripe balance of the same amount), once."""
    referral = (
        Referral.objects.select_related("referrer")
        .filter(referred=referred, credited_at__isnull=False, clawed_back_at__isnull=True, credit_cents__gt=0)
        .first()
    )
    if referral is None:
        return None
    transaction_id = ""
    if stripe_enabled() and referral.stripe_balance_transaction_id:
        transaction_id = stripe_gateway.customer_balance_adjust(
            user=referral.referrer,
            amount=referral.credit_cents,
            currency=referral.currency,
            description=f"Referral credit taken back: {referred.email}'s payment was {reason}",
            idempotency_key=f"qm-referral-clawback-{referral.pk}",
        )
    with transaction.atomic():
        referral = Referral.objects.select_for_update().get(pk=referral.pk)
        if referral.clawed_back_at is not None:
            return referral
        referral.clawed_back_at, referral.clawback_balance_transaction_id = timezone.now(), transaction_id
        referral.save(update_fields=["clawed_back_at", "clawback_balance_transaction_id"])
        billing_event_record(
            user=referral.referrer,
            kind=BillingEvent.Kind.REFERRAL_CLAWED_BACK,
            source="stripe",
            amount=referral.credit_cents,
            currency=referral.currency,
            referred=referred.email,
            reason=reason,
            charge=charge_id,
        )
    return referral
