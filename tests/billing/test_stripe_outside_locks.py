"""Stripe is called outside row locks (and, for the user's own actions, outside any transaction):
while a call to the Stripe test server is in flight, a second database connection locks the rows
the call is about at once (NOWAIT). Committing tests, so each transaction and lock is the real one.
"""

from __future__ import annotations

import psycopg
import psycopg.sql
import pytest
from django.db import connection
from djstripe.models import Customer

from billing.models import BillingEvent, Referral, Subscription

from .test_stripe import _subscribe

pytestmark = pytest.mark.django_db(transaction=True)


def _second_connection() -> psycopg.Connection:
    db = connection.settings_dict
    return psycopg.connect(
        dbname=db["NAME"], user=db["USER"], password=db["PASSWORD"], host=db["HOST"], port=db["PORT"] or 5432
    )


class LockProbe:
    """Run while Stripe answers a watched call: can another connection lock these rows right now, and
    is the portal's connection inside a transaction?"""

    def __init__(self, *, rows: list[tuple[str, int]], watch):
        self.rows, self.watch = rows, watch
        self.seen: list[tuple[str, str, str]] = []  # (call, table, "free" | "held")
        self.in_transaction: list[str] = []

    def __call__(self, method: str, path: str) -> None:
        if not self.watch(method, path):
            return
        call = f"{method} {path}"
        with _second_connection() as other:
            for table, pk in self.rows:
                try:
                    with other.transaction():
                        query = psycopg.sql.SQL("SELECT 1 FROM {} WHERE id = %s FOR UPDATE NOWAIT")
                        other.execute(query.format(psycopg.sql.Identifier(table)), [pk])
                    self.seen.append((call, table, "free"))
                except psycopg.errors.LockNotAvailable:
                    self.seen.append((call, table, "held"))
            idle_in_transaction = other.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state LIKE 'idle in transaction%%' AND pid <> pg_backend_pid()"
            ).fetchone()[0]
            if idle_in_transaction:
                self.in_transaction.append(call)


def _subscription_calls(method: str, path: str) -> bool:
    return path.startswith("/v1/subscriptions")


def test_plan_change_calls_stripe_without_holding_the_subscription_row(stripe_billing, user, client_for):
    client = client_for(user)
    _subscribe(client, user, stripe_billing)
    row = Subscription.objects.get(user=user)
    probe = LockProbe(rows=[("billing_subscription", row.pk)], watch=_subscription_calls)
    stripe_billing.server.while_answering = probe
    response = client.post("/api/billing/subscriptions/update-plan", {"new_plan": "enterprise"}, format="json")
    stripe_billing.server.while_answering = None
    assert response.status_code == 200, response.content
    assert response.json()["plan"] == "enterprise"
    assert probe.seen and all(state == "free" for _, _, state in probe.seen), probe.seen
    assert probe.in_transaction == []


def test_cancel_calls_stripe_without_holding_the_subscription_row(stripe_billing, user, client_for):
    client = client_for(user)
    _subscribe(client, user, stripe_billing)
    row = Subscription.objects.get(user=user)
    probe = LockProbe(rows=[("billing_subscription", row.pk)], watch=_subscription_calls)
    stripe_billing.server.while_answering = probe
    response = client.post("/api/billing/subscriptions/cancel", {"immediately": True}, format="json")
    stripe_billing.server.while_answering = None
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "canceled"
    assert {call.split()[0] for call, _, _ in probe.seen} >= {"GET", "DELETE"}
    assert all(state == "free" for _, _, state in probe.seen), probe.seen
    assert probe.in_transaction == []


def test_plan_change_rechecks_the_row_a_webhook_replaced_while_stripe_answered(stripe_billing, user, client_for):
    """Another subscription was synced while Stripe answered the change: the change is not marked as
    pending on the subscription that replaced it."""
    client = client_for(user)
    _subscribe(client, user, stripe_billing)
    row = Subscription.objects.get(user=user)

    def replace_meanwhile(method: str, path: str) -> None:
        if method == "POST" and path.startswith("/v1/subscriptions/"):
            with _second_connection() as other:
                other.execute(
                    "UPDATE billing_subscription SET stripe_subscription_id = 'sub_replaced' WHERE id = %s", [row.pk]
                )

    stripe_billing.server.declining.add(Customer.objects.get(subscriber=user).id)  # the upgrade waits for payment
    stripe_billing.server.while_answering = replace_meanwhile
    response = client.post("/api/billing/subscriptions/update-plan", {"new_plan": "enterprise"}, format="json")
    stripe_billing.server.while_answering = None
    assert response.status_code == 200, response.content
    row.refresh_from_db()
    assert (row.stripe_subscription_id, row.plan.code, row.pending_plan) == ("sub_replaced", "personal", None)
    assert not BillingEvent.objects.filter(user=user, kind=BillingEvent.Kind.CHANGE_SCHEDULED).exists()


def test_paid_invoice_credits_the_referrer_at_stripe_before_locking_rows(stripe_billing, make_user, client_for):
    """invoice.paid runs inside dj-stripe's webhook transaction: a row locked there stays locked until
    the event commits, so the referral credit's Stripe call must come before any lock."""
    referrer, referred = make_user(), make_user()
    Referral.objects.create(referrer=referrer, referred=referred)
    referred_client = client_for(referred)
    sub = _subscribe(referred_client, referred, stripe_billing, "professional")
    referral = Referral.objects.get(referred=referred)
    probe = LockProbe(
        rows=[("billing_subscription", Subscription.objects.get(user=referred).pk), ("billing_referral", referral.pk)],
        watch=lambda method, path: method == "POST" and path.endswith("/balance_transactions"),
    )
    stripe_billing.server.while_answering = probe
    assert stripe_billing.send(referred_client, "invoice.paid", stripe_billing.server.invoice(subscription=sub)) == 200
    stripe_billing.server.while_answering = None
    referral.refresh_from_db()
    assert referral.credit_cents == 19900 * 20 // 100
    assert [state for _, _, state in probe.seen] == ["free", "free"], probe.seen
