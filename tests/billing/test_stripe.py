"""Stripe billing end to end: Checkout, webhooks through dj-stripe's real endpoint (signed, repeated,
out of order, forged), plan changes, cancels, failed payments and the grace period, referral credit.
"""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
import stripe
from django.core.management import call_command
from django.utils import timezone
from djstripe.models import Customer, Event

from billing import catalogue
from billing.models import BillingEvent, Plan, Referral, Subscription
from billing.selectors import entitlements_for
from billing.services import subscriptions_expire
from billing.signals import entitlements_changed
from instances.models import Instance

pytestmark = pytest.mark.django_db


@pytest.fixture
def signals_seen():
    """Records what billing tells the rest of the product."""
    seen = []

    def changed(sender, user, reason="", **kwargs):
        plan = entitlements_for(user).plan
        seen.append(("entitlements_changed", user.pk, plan.code if plan else None, reason))

    entitlements_changed.connect(changed)
    yield seen
    entitlements_changed.disconnect(changed)


def _instance_row(owner, plan, slug, status):
    """An instance row with no engine behind it: billing only counts and stops instances."""
    return Instance.objects.create(
        instance_id=f"qm-{slug}-1700000000",
        slug=slug,
        owner=owner,
        plan=plan,
        status=status,
        image="x",
        proxy_secret_encrypted="x",
    )


def _checkout(client, billing, plan="personal", interval="month"):
    response = client.post("/api/billing/subscriptions/create", {"plan": plan, "interval": interval}, format="json")
    assert response.status_code == 202, response.content
    return response.json()


def _subscribe(client, user, billing, plan="personal", interval="month", status="active"):
    """The whole Checkout round trip: the API starts Checkout, Stripe charges the card and sends
    checkout.session.completed and customer.subscription.created."""
    _checkout(client, billing, plan, interval)
    customer = Customer.objects.get(subscriber=user)
    sub = billing.server.subscription(customer=customer.id, price=billing.price(plan, interval), status=status)
    session = next(o for o in billing.server.objects.values() if o.get("object") == "checkout.session")
    session.update(status="complete", payment_status="paid", subscription=sub["id"])
    assert billing.deliver(client, billing.server.event("checkout.session.completed", session)).status_code == 200
    assert billing.deliver(client, billing.server.event("customer.subscription.created", sub)).status_code == 200
    return sub


def test_sync_command_creates_products_and_prices_idempotently(stripe_billing):
    first = {p.code: (p.stripe_price_month_id, p.stripe_price_year_id) for p in Plan.objects.all()}
    assert all(month and year for month, year in first.values())
    call_command("billing_stripe_sync", webhook_base_url="http://testserver", stdout=io.StringIO())
    assert {p.code: (p.stripe_price_month_id, p.stripe_price_year_id) for p in Plan.objects.all()} == first
    # Products live in localstripe; prices carry the catalogue's amounts, the year discounted.
    product = stripe.Product.retrieve("qm_professional", api_key="sk_test_QuantMeshBillingTests0000001")
    assert product["metadata"]["qm_plan"] == "professional"
    month, year = stripe_billing.price("professional"), stripe_billing.price("professional", "year")
    assert (month["unit_amount"], month["recurring"]["interval"]) == (19900, "month")
    assert (year["unit_amount"], year["recurring"]["interval"]) == (19900 * catalogue.YEARLY_MONTHS_CHARGED, "year")
    assert year["lookup_key"] == "qm_professional_year"


def test_sync_command_replaces_a_changed_price_and_archives_the_old(stripe_billing, monkeypatch):
    plan = Plan.objects.get(code="personal")
    old_id = plan.stripe_price_month_id
    monkeypatch.setitem(catalogue.PLAN_CATALOGUE[0], "price_monthly_cents", 5900)
    call_command("billing_stripe_sync", skip_webhook=True, stdout=io.StringIO())
    plan.refresh_from_db()
    assert plan.stripe_price_month_id != old_id
    assert stripe_billing.server.objects[plan.stripe_price_month_id]["unit_amount"] == 5900
    assert stripe_billing.server.objects[plan.stripe_price_month_id]["lookup_key"] == "qm_personal_month"
    assert stripe_billing.server.objects[old_id]["active"] is False


def test_sync_command_refuses_without_stripe(settings):
    settings.QM_BILLING_PROVIDER = "local"
    with pytest.raises(Exception, match="STRIPE_SECRET_KEY"):
        call_command("billing_stripe_sync")


def test_create_starts_checkout_and_grants_nothing_until_paid(stripe_billing, user, client_for):
    client = client_for(user)
    body = _checkout(client, stripe_billing, "professional", "year")
    assert body["checkout_url"].startswith("https://checkout.stripe.com/c/pay/cs_test_")
    assert body["status"] == "trialing" and body["trial"] is True  # still the no-card trial, not a plan
    method, path, form = next(r for r in stripe_billing.server.requests if r[:2] == ("POST", "/v1/checkout/sessions"))
    assert form["mode"] == "subscription"
    price_id = Plan.objects.get(code="professional").stripe_price_year_id
    assert form["line_items"] == [{"price": price_id, "quantity": "1"}]
    # The customer is a real localstripe customer linked to the user by dj-stripe.
    customer = Customer.objects.get(subscriber=user)
    remote = stripe.Customer.retrieve(customer.id, api_key="sk_test_QuantMeshBillingTests0000001")
    assert remote["email"] == user.email
    assert form["customer"] == customer.id
    assert not Subscription.objects.filter(user=user).exists()


def test_checkout_completion_activates_the_plan(
    stripe_billing, user, client_for, signals_seen, django_capture_on_commit_callbacks
):
    client = client_for(user)
    with django_capture_on_commit_callbacks(execute=True):
        sub = _subscribe(client, user, stripe_billing, "professional")
    body = client.get("/api/billing/subscriptions").json()
    assert (body["plan"], body["status"], body["provider"]) == ("professional", "active", "stripe")
    assert body["trial"] is False
    assert body["limits"]["max_instances"] == 3
    row = Subscription.objects.get(user=user)
    assert row.stripe_subscription_id == sub["id"]
    assert row.current_period_end.timestamp() == sub["items"]["data"][0]["current_period_end"]
    assert ("entitlements_changed", user.pk, "professional", "plan changed") in signals_seen
    # Two webhooks said the same thing: one audit row.
    assert BillingEvent.objects.filter(user=user, kind=BillingEvent.Kind.SUBSCRIBED).count() == 1


def test_duplicate_delivery_is_processed_once(stripe_billing, user, client_for):
    client = client_for(user)
    sub = _subscribe(client, user, stripe_billing)
    sub["status"] = "past_due"
    event = stripe_billing.server.event("customer.subscription.updated", sub)
    for _ in range(3):
        assert stripe_billing.deliver(client, event).status_code == 200
    assert Event.objects.filter(id=event["id"]).count() == 1
    assert BillingEvent.objects.filter(user=user, kind=BillingEvent.Kind.PAYMENT_FAILED).count() == 1


def test_out_of_order_events_cannot_move_the_subscription_back(stripe_billing, user, client_for):
    client = client_for(user)
    _checkout(client, stripe_billing)
    customer = Customer.objects.get(subscriber=user)
    created = stripe_billing.server.subscription(customer=customer.id, price=stripe_billing.price("personal"))
    created_event = stripe_billing.server.event("customer.subscription.created", created)
    # Stripe's current state: upgraded to enterprise; the upgrade's event arrives first.
    created["items"]["data"][0]["price"] = stripe_billing.price("enterprise")
    updated_event = stripe_billing.server.event("customer.subscription.updated", created)
    assert stripe_billing.deliver(client, updated_event).status_code == 200
    assert stripe_billing.deliver(client, created_event).status_code == 200
    assert Subscription.objects.get(user=user).plan.code == "enterprise"


def test_late_deletion_of_an_old_subscription_leaves_the_current_one(stripe_billing, user, client_for):
    client = client_for(user)
    old = _subscribe(client, user, stripe_billing)
    Subscription.objects.filter(user=user).update(status=Subscription.Status.CANCELED)
    Customer.objects.get(subscriber=user)
    new = stripe_billing.server.subscription(customer=old["customer"], price=stripe_billing.price("professional"))
    assert stripe_billing.send(client, "customer.subscription.created", new) == 200
    old.update(status="canceled")
    assert stripe_billing.send(client, "customer.subscription.deleted", old) == 200
    row = Subscription.objects.get(user=user)
    assert (row.stripe_subscription_id, row.status, row.plan.code) == (new["id"], "active", "professional")


@pytest.mark.parametrize("problem", ["bad secret", "tampered body", "no signature", "stale timestamp"])
def test_forged_webhooks_are_rejected_and_change_nothing(stripe_billing, user, client_for, client, problem):
    _checkout(client_for(user), stripe_billing)
    customer = Customer.objects.get(subscriber=user)
    sub = stripe_billing.server.subscription(customer=customer.id, price=stripe_billing.price("enterprise"))
    event = stripe_billing.server.event("customer.subscription.created", sub)
    url = f"/stripe/webhook/{stripe_billing.endpoint.djstripe_uuid}/"
    body = json.dumps(event).encode()
    headers = {"Stripe-Signature": stripe_billing.server.signature(body, stripe_billing.endpoint.secret)}
    if problem == "bad secret":
        headers = {"Stripe-Signature": stripe_billing.server.signature(body, "whsec_forged")}
    elif problem == "tampered body":
        body = body.replace(b'"active"', b'"trialing"')
    elif problem == "no signature":
        headers = {}
    else:
        headers = {"Stripe-Signature": stripe_billing.server.signature(body, stripe_billing.endpoint.secret, 1000)}
    response = client.post(url, data=body, content_type="application/json", headers=headers)
    assert response.status_code == 400
    assert not Subscription.objects.filter(user=user).exists()
    assert not Event.objects.filter(id=event["id"]).exists()


def test_upgrade_changes_the_stripe_price_and_the_plan_now(
    stripe_billing, user, client_for, signals_seen, django_capture_on_commit_callbacks
):
    client = client_for(user)
    sub = _subscribe(client, user, stripe_billing)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/billing/subscriptions/update-plan", {"new_plan": "enterprise"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["plan"] == "enterprise"
    assert stripe_billing.server.objects[sub["id"]]["items"]["data"][0]["price"]["lookup_key"] == "qm_enterprise_month"
    assert ("entitlements_changed", user.pk, "enterprise", "plan changed") in signals_seen
    # Stripe's own customer.subscription.updated for the same change: nothing more happens.
    stripe_billing.send(client, "customer.subscription.updated", stripe_billing.server.objects[sub["id"]])
    assert BillingEvent.objects.filter(user=user, kind=BillingEvent.Kind.PLAN_CHANGED).count() == 1


def test_downgrade_that_does_not_fit_is_refused_and_stripe_untouched(stripe_billing, user, client_for):
    client = client_for(user)
    sub = _subscribe(client, user, stripe_billing, "professional")
    professional = Plan.objects.get(code="professional")
    for n in range(2):
        _instance_row(user, professional, f"dgr{n}aa", Instance.Status.STOPPED)
    before = len(stripe_billing.server.requests)
    response = client.post("/api/billing/subscriptions/update-plan", {"new_plan": "personal"}, format="json")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "plan_does_not_fit"
    assert [item["instance_id"] for item in error["details"]["over"]] == ["qm-dgr1aa-1700000000"]
    assert Subscription.objects.get(user=user).plan.code == "professional"
    price = stripe_billing.server.objects[sub["id"]]["items"]["data"][0]["price"]
    assert price["lookup_key"] == "qm_professional_month"
    assert not [r for r in stripe_billing.server.requests[before:] if r[0] == "POST"]


def test_cancel_at_period_end_keeps_the_plan_until_stripe_ends_it(
    stripe_billing, user, client_for, signals_seen, django_capture_on_commit_callbacks
):
    client = client_for(user)
    sub = _subscribe(client, user, stripe_billing)
    response = client.post("/api/billing/subscriptions/cancel", {"immediately": False}, format="json")
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["cancel_at_period_end"]) == ("active", True)
    assert stripe_billing.server.objects[sub["id"]]["cancel_at_period_end"] is True
    assert entitlements_for(user).plan.code == "personal"
    # The period ends: Stripe deletes the subscription and says so.
    sub.update(status="canceled")
    with django_capture_on_commit_callbacks(execute=True):
        stripe_billing.send(client, "customer.subscription.deleted", sub)
    assert Subscription.objects.get(user=user).status == "canceled"
    assert entitlements_for(user).plan is None
    assert ("entitlements_changed", user.pk, None, "plan canceled") in signals_seen


def test_cancel_immediately_ends_now_and_stops_instances(
    stripe_billing, user, client_for, signals_seen, django_capture_on_commit_callbacks
):
    client = client_for(user)
    sub = _subscribe(client, user, stripe_billing)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/api/billing/subscriptions/cancel", {"immediately": True}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "canceled"
    assert stripe_billing.server.objects[sub["id"]]["status"] == "canceled"
    assert ("entitlements_changed", user.pk, None, "plan canceled") in signals_seen
    assert BillingEvent.objects.filter(user=user, kind=BillingEvent.Kind.CANCELED).count() == 1


def test_failed_payment_gives_a_grace_period_then_stops_and_paying_restores(
    stripe_billing, user, client_for, signals_seen, django_capture_on_commit_callbacks
):
    client = client_for(user)
    sub = _subscribe(client, user, stripe_billing)
    _instance_row(user, Plan.objects.get(code="personal"), "grace1", Instance.Status.RUNNING)
    sub["status"] = "past_due"
    failed = stripe_billing.server.invoice(subscription=sub, status="open")
    assert stripe_billing.send(client, "invoice.payment_failed", failed) == 200
    body = client.get("/api/billing/subscriptions").json()
    assert body["status"] == "past_due" and body["payment_grace_ends_at"]
    assert entitlements_for(user).plan is not None  # within the grace period instances keep running
    assert subscriptions_expire() == 0

    Subscription.objects.filter(user=user).update(past_due_since=timezone.now() - timedelta(days=4))
    assert entitlements_for(user).plan is None
    with django_capture_on_commit_callbacks(execute=True):
        assert subscriptions_expire() == 1
    assert ("entitlements_changed", user.pk, None, "payment overdue") in signals_seen
    assert Instance.objects.get(slug="grace1").desired_state == "stopped"

    # The customer pays: Stripe marks the invoice paid and the subscription active again.
    sub["status"] = "active"
    failed.update(status="paid", amount_paid=failed["amount_due"], amount_remaining=0)
    assert stripe_billing.send(client, "invoice.paid", failed) == 200
    row = Subscription.objects.get(user=user)
    assert (row.status, row.past_due_since) == ("active", None)
    assert entitlements_for(user).plan.code == "personal"
    kinds = list(BillingEvent.objects.filter(user=user).values_list("kind", flat=True))
    assert {"payment_failed", "suspended", "payment_recovered"} <= set(kinds)


def test_referral_credit_on_the_referred_users_first_paid_invoice(stripe_billing, make_user, client_for, client):
    referrer = make_user()
    referrer_client = client_for(referrer)
    _subscribe(referrer_client, referrer, stripe_billing, "professional")
    code = client.get("/billing/")  # anonymous: login required
    assert code.status_code == 302
    client.force_login(referrer)
    page = client.get("/billing/").content.decode()
    link = page.split('id="referral-url" type="text" readonly value="')[1].split('"')[0]
    client.logout()

    # A visitor follows the link and signs up.
    assert client.get(link.replace("http://testserver", "")).status_code == 302
    response = client.post(
        "/accounts/signup/",
        {"email": "referred@example.org", "password1": "a-Long-unusual-pass-42", "password2": "a-Long-unusual-pass-42"},
    )
    assert response.status_code == 302, response.content
    referral = Referral.objects.get(referred__email="referred@example.org")
    assert referral.referrer == referrer and referral.credited_at is None

    referred = referral.referred
    referred.emailaddress_set.update(verified=True)
    referred_client = client_for(referred)
    sub = _subscribe(referred_client, referred, stripe_billing, "professional")
    invoice = stripe_billing.server.invoice(subscription=sub)
    event = stripe_billing.server.event("invoice.paid", invoice)
    assert stripe_billing.deliver(referred_client, event).status_code == 200
    # Stripe retries deliveries; a second event for the same invoice credits nothing more.
    assert stripe_billing.send(referred_client, "invoice.paid", invoice) == 200

    referral.refresh_from_db()
    assert referral.credit_cents == 19900 * 20 // 100
    credits = [o for o in stripe_billing.server.objects.values() if o.get("object") == "customer_balance_transaction"]
    assert len(credits) == 1
    assert credits[0]["amount"] == -3980
    assert credits[0]["customer"] == Customer.objects.get(subscriber=referrer).id
    assert credits[0]["id"] == referral.stripe_balance_transaction_id
    assert BillingEvent.objects.filter(user=referrer, kind=BillingEvent.Kind.REFERRAL_CREDITED).count() == 1


def test_self_referral_and_unknown_codes_are_ignored(db, client, make_user):
    from billing.services import referral_code_for, referral_record

    user = make_user()
    code = referral_code_for(user=user).code
    assert referral_record(referred=user, code=code) is None
    assert referral_record(referred=make_user(), code="nope") is None
    assert client.get("/r/nope").status_code == 302
    assert "qm_referral_code" not in client.session


def test_billing_page_with_stripe_checkout_portal_and_invoices(stripe_billing, user, client_for, client):
    client.force_login(user)
    page = client.get("/billing/").content.decode()
    assert "secure page; the plan starts once the payment succeeds" in page and "Local billing" not in page
    response = client.post("/billing/", {"action": "subscribe", "plan": "personal", "interval": "month"})
    assert response.status_code == 302 and response["Location"].startswith("https://checkout.stripe.com/")

    api = client_for(user)
    customer = Customer.objects.get(subscriber=user)
    sub = stripe_billing.server.subscription(customer=customer.id, price=stripe_billing.price("personal"))
    stripe_billing.send(api, "customer.subscription.created", sub)
    invoice = stripe_billing.server.invoice(subscription=sub)
    stripe_billing.send(api, "invoice.paid", invoice)

    page = client.get("/billing/").content.decode()
    assert invoice["number"] in page and invoice["hosted_invoice_url"] in page
    assert api.get("/api/billing/invoices").json()[0]["number"] == invoice["number"]
    response = client.post("/billing/portal")
    assert response.status_code == 302 and response["Location"].startswith("https://billing.stripe.com/p/session/")
    portal = next(r for r in stripe_billing.server.requests if r[1] == "/v1/billing_portal/sessions")
    assert portal[2]["customer"] == customer.id
