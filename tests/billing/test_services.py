"""The ways paid service leaked (issue 18), each against the fake Stripe: a price change, cancel then
a smaller plan, a downgrade in Stripe's portal, an unpaid upgrade, a lost webhook, two Checkouts,
a refunded referral; and tax, dunning, 3-D Secure, unknown customers, money."""

from __future__ import annotations

import io
import secrets
from datetime import timedelta

import pytest
import stripe
from django.core import mail
from django.core.management import call_command
from django.utils import timezone
from djstripe.models import Customer, WebhookEventTrigger

from alerts.models import Alert
from billing import catalogue
from billing.models import BillingEvent, Plan, Referral, Subscription
from billing.selectors import entitlements_for
from billing.services import dunning_remind, referral_record
from instances.models import CustomDomain, Instance, InstanceEvent
from instances.services.domains import instance_for_domain
from instances.traefik import dynamic_config
from quantmesh.crypto import encrypt

from .test_stripe import _checkout, _instance_row, _subscribe

pytestmark = pytest.mark.django_db
API_KEY = "sk_test_QuantMeshBillingTests0000001"


def _running(user, plan_code: str, count: int) -> list[Instance]:
    plan = Plan.objects.get(code=plan_code)
    made = []
    for n in range(count):
        instance = _instance_row(user, plan, f"r{n}{secrets.token_hex(2)}", Instance.Status.RUNNING)
        instance.proxy_secret_encrypted = encrypt("proxy-secret")
        instance.desired_state = Instance.Desired.RUNNING
        instance.created_at = timezone.now() - timedelta(minutes=10 - n)
        instance.save()
        made.append(instance)
    return made


def _desired(instances) -> list[str]:
    return [Instance.objects.get(pk=i.pk).desired_state for i in instances]


def test_price_change_keeps_existing_subscribers_on_their_plan(stripe_billing, user, client_for, monkeypatch):
    client = client_for(user)
    sub = _subscribe(client, user, stripe_billing, "personal")
    monkeypatch.setitem(catalogue.PLAN_CATALOGUE[0], "price_monthly_cents", 5900)
    call_command("billing_stripe_sync", skip_webhook=True, stdout=io.StringIO())
    assert Plan.objects.get(code="personal").stripe_price_month_id != sub["items"]["data"][0]["price"]["id"]
    # The old subscriber's payment fails: the grace period starts.
    sub["status"] = "past_due"
    assert stripe_billing.send(client, "customer.subscription.updated", sub) == 200
    row = Subscription.objects.get(user=user)
    assert (row.status, row.plan.code) == ("past_due", "personal") and row.past_due_since is not None
    # Stripe ends it: it ends here too.
    sub["status"] = "canceled"
    assert stripe_billing.send(client, "customer.subscription.deleted", sub) == 200
    assert Subscription.objects.get(user=user).status == "canceled"
    assert entitlements_for(user).plan is None


def test_a_price_no_plan_sells_grants_nothing_and_alerts_staff(stripe_billing, user, client_for, settings):
    settings.ADMINS = [("Ops", "ops@example.net")]
    client = client_for(user)
    _checkout(client, stripe_billing)
    stripe.Product.create(id="prod_SomethingElse", name="Not a plan", api_key=API_KEY)
    foreign = dict(stripe_billing.price("enterprise"), id="price_foreign1", product="prod_SomethingElse")
    stripe_billing.server.put(foreign)
    customer = Customer.objects.get(subscriber=user)
    sub = stripe_billing.server.subscription(customer=customer.id, price=foreign)
    assert stripe_billing.send(client, "customer.subscription.created", sub) == 200
    assert not Subscription.objects.filter(user=user, status__in=["active", "trialing", "past_due"]).exists()
    assert [m.to for m in mail.outbox] == [["ops@example.net"]] and "price_foreign1" in mail.outbox[0].body


def test_cancel_then_a_smaller_plan_runs_only_what_it_allows(
    stripe_billing, user, client_for, django_capture_on_commit_callbacks
):
    client = client_for(user)
    _subscribe(client, user, stripe_billing, "enterprise")
    instances = _running(user, "enterprise", 4)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post("/api/billing/subscriptions/cancel", {"immediately": True}, format="json").status_code == 200
    assert _desired(instances) == ["stopped"] * 4
    Instance.objects.filter(owner=user).update(status=Instance.Status.STOPPED)
    Subscription.objects.filter(user=user).delete()
    Customer.objects.filter(subscriber=user).update()
    _subscribe(client, user, stripe_billing, "personal")
    # Nothing converges here: without wait=0 the call waits out its whole bound (60 s).
    first = client.post(f"/api/saas/instances/{instances[0].instance_id}/start?wait=0")
    assert first.status_code in (200, 202), first.content
    for instance in instances[1:]:
        response = client.post(f"/api/saas/instances/{instance.instance_id}/start")
        assert response.status_code == 403
        error = response.json()["error"]
        assert error["code"] == "instance_limit_reached" and "allows 1 running instance" in error["message"]
        assert error["details"]["limit"] == 1
    restart = client.post(f"/api/saas/instances/{instances[3].instance_id}/restart")
    assert restart.status_code == 403 and restart.json()["error"]["code"] == "instance_limit_reached"
    assert _desired(instances) == ["running", "stopped", "stopped", "stopped"]


def test_downgrade_in_stripes_portal_stops_the_newest_excess_and_unroutes_domains(
    stripe_billing, user, client_for, django_capture_on_commit_callbacks
):
    client = client_for(user)
    sub = _subscribe(client, user, stripe_billing, "professional")
    instances = _running(user, "professional", 3)
    domain = CustomDomain.objects.create(instance=instances[0], domain="trade.example.org", verified_at=timezone.now())
    assert instance_for_domain("trade.example.org") == instances[0]
    # The customer picks Personal in Stripe's customer portal: Stripe changes the price and says so.
    sub["items"]["data"][0]["price"] = stripe_billing.price("personal")
    with django_capture_on_commit_callbacks(execute=True):
        assert stripe_billing.send(client, "customer.subscription.updated", sub) == 200
    assert Subscription.objects.get(user=user).plan.code == "personal"
    assert _desired(instances) == ["running", "stopped", "stopped"]  # newest first, the oldest runs on
    stops = InstanceEvent.objects.filter(kind="stopped_by_plan", instance__owner=user)
    assert {e.instance_id for e in stops} == {instances[1].pk, instances[2].pk}
    assert all("Personal plan allows 1 running instance" in e.detail["reason"] for e in stops)
    assert Alert.objects.filter(user=user, kind="billing").exists()
    domain.refresh_from_db()
    assert domain.suspended_at is not None and instance_for_domain("trade.example.org") is None
    rules = [router["rule"] for router in dynamic_config()["http"]["routers"].values()]
    assert not any("trade.example.org" in rule for rule in rules)
    assert InstanceEvent.objects.filter(kind="domain_unrouted", instance=instances[0]).count() == 1


def test_unpaid_upgrade_starts_only_when_paid(stripe_billing, user, client_for):
    client = client_for(user)
    sub = _subscribe(client, user, stripe_billing, "personal")
    stripe_billing.server.declining.add(sub["customer"])
    response = client.post("/api/billing/subscriptions/update-plan", {"new_plan": "enterprise"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["plan"] == "personal" and body["limits"]["max_instances"] == 1
    pending = body["pending_change"]
    assert (pending["plan"], pending["effective"]) == ("enterprise", "when_paid") and pending["invoice_url"]
    modify = [r[2] for r in stripe_billing.server.requests if r[:2] == ("POST", f"/v1/subscriptions/{sub['id']}")][-1]
    assert (modify["proration_behavior"], modify["payment_behavior"]) == ("always_invoice", "pending_if_incomplete")
    assert entitlements_for(user).plan.code == "personal"
    # The customer pays the invoice: Stripe applies the update and says so.
    invoice = stripe_billing.server.objects[stripe_billing.server.objects[sub["id"]]["latest_invoice"]]
    assert invoice["amount_due"] == 99900 - 4900
    stripe_billing.server.pay(invoice)
    assert stripe_billing.send(client, "invoice.paid", invoice) == 200
    body = client.get("/api/billing/subscriptions").json()
    assert (body["plan"], body["pending_change"]) == ("enterprise", None)


def test_downgrade_waits_for_the_end_of_the_paid_period(stripe_billing, user, client_for):
    client = client_for(user)
    sub = _subscribe(client, user, stripe_billing, "enterprise")
    response = client.post("/api/billing/subscriptions/update-plan", {"new_plan": "personal"}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["plan"] == "enterprise" and body["pending_change"]["effective"] == "period_end"
    assert not [r for r in stripe_billing.server.requests if r[2].get("proration_behavior") == "always_invoice"]
    stripe_billing.server.period_ends(stripe_billing.server.objects[sub["id"]])
    assert stripe_billing.send(client, "customer.subscription.updated", stripe_billing.server.objects[sub["id"]]) == 200
    body = client.get("/api/billing/subscriptions").json()
    assert (body["plan"], body["pending_change"]) == ("personal", None)


def test_monthly_to_yearly_switch_through_update_plan(stripe_billing, user, client_for):
    client = client_for(user)
    sub = _subscribe(client, user, stripe_billing, "professional")
    response = client.post(
        "/api/billing/subscriptions/update-plan", {"new_plan": "professional", "interval": "year"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert (response.json()["plan"], response.json()["interval"]) == ("professional", "year")
    assert stripe_billing.server.objects[sub["id"]]["items"]["data"][0]["price"]["recurring"]["interval"] == "year"
    bad = client.post(
        "/api/billing/subscriptions/update-plan", {"new_plan": "professional", "interval": "weekly"}, format="json"
    )
    assert bad.status_code == 400 and "interval" in bad.json()["error"]["details"]


def test_cancel_now_invoices_what_is_owed_and_ends_every_live_subscription(stripe_billing, user, client_for):
    client = client_for(user)
    sub = _subscribe(client, user, stripe_billing, "personal")
    second = stripe_billing.server.subscription(customer=sub["customer"], price=stripe_billing.price("personal"))
    assert client.post("/api/billing/subscriptions/cancel", {"immediately": True}, format="json").status_code == 200
    cancels = [r for r in stripe_billing.server.requests if r[0] == "DELETE"]
    assert {r[1] for r in cancels} == {f"/v1/subscriptions/{sub['id']}", f"/v1/subscriptions/{second['id']}"}
    assert all((r[2]["invoice_now"], r[2]["prorate"]) == ("true", "true") for r in cancels)
    assert stripe_billing.server.objects[second["id"]]["status"] == "canceled"


def test_reconcile_ends_what_a_lost_webhook_left_running(stripe_billing, user, make_user, client_for):
    client = client_for(user)
    sub = _subscribe(client, user, stripe_billing, "enterprise")
    # Stripe ended it 40 days ago; the webhook never came.
    stripe_billing.server.objects.pop(sub["id"])
    Subscription.objects.filter(user=user).update(current_period_end=timezone.now() - timedelta(days=40))
    other = make_user()
    other_sub = _subscribe(client_for(other), other, stripe_billing, "professional")
    stripe_billing.server.objects[other_sub["id"]]["status"] = "canceled"
    out = io.StringIO()
    call_command("billing_reconcile", stdout=out)
    assert "ended: 1" in out.getvalue()
    assert entitlements_for(user).plan is None and entitlements_for(other).plan is None
    assert BillingEvent.objects.filter(user=user, kind="reconciled").exists()


def test_reconcile_ends_a_long_past_period_even_when_stripe_is_unreachable(stripe_billing, user, client_for):
    client = client_for(user)
    _subscribe(client, user, stripe_billing, "enterprise")
    Subscription.objects.filter(user=user).update(current_period_end=timezone.now() - timedelta(days=40))
    stripe.api_base = "http://127.0.0.1:9"  # nothing listens
    call_command("billing_reconcile", stdout=io.StringIO())
    assert entitlements_for(user).plan is None


def test_two_checkouts_cannot_both_be_paid(stripe_billing, user, client_for):
    client = client_for(user)
    first = _checkout(client, stripe_billing)["checkout_url"].rsplit("/", 1)[1]
    second = _checkout(client, stripe_billing)["checkout_url"].rsplit("/", 1)[1]
    assert stripe_billing.server.objects[first]["status"] == "expired"
    assert stripe_billing.server.objects[second]["status"] == "open"
    # The second is paid but its webhook is late: a third attempt asks Stripe and is refused.
    customer = Customer.objects.get(subscriber=user)
    live = stripe_billing.server.subscription(customer=customer.id, price=stripe_billing.price("personal"))
    response = client.post("/api/billing/subscriptions/create", {"plan": "enterprise"}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "already_subscribed"
    assert response.json()["error"]["details"]["stripe_subscriptions"] == [live["id"]]
    assert Subscription.objects.get(user=user).stripe_subscription_id == live["id"]  # caught up


def test_checkout_collects_tax_and_the_billing_address(stripe_billing, user, client_for):
    _checkout(client_for(user), stripe_billing)
    form = next(r[2] for r in stripe_billing.server.requests if r[:2] == ("POST", "/v1/checkout/sessions"))
    assert form["automatic_tax"] == {"enabled": "true"} and form["tax_id_collection"] == {"enabled": "true"}
    assert form["billing_address_collection"] == "required"
    assert form["customer_update"] == {"address": "auto", "name": "auto"}


def _referred_pair(stripe_billing, make_user, client_for):
    referrer = make_user(email="alice@alpha.example")
    referred = make_user(email="bob@beta.example")
    _subscribe(client_for(referrer), referrer, stripe_billing, "professional")
    from billing.services import referral_code_for

    assert referral_record(referred=referred, code=referral_code_for(user=referrer).code) is not None
    referred_client = client_for(referred)
    sub = _subscribe(referred_client, referred, stripe_billing, "enterprise", "year")
    return referrer, referred, referred_client, sub


def test_refund_claws_the_referral_credit_back(stripe_billing, make_user, client_for):
    referrer, referred, client, sub = _referred_pair(stripe_billing, make_user, client_for)
    invoice = stripe_billing.server.invoice(subscription=sub)
    assert stripe_billing.send(client, "invoice.paid", invoice) == 200
    referral = Referral.objects.get(referred=referred)
    assert referral.credit_cents == 999000 * 20 // 100
    charge = stripe_billing.server.charge(invoice=invoice, refunded=True)
    for _ in range(2):  # Stripe retries; the claw-back happens once
        assert stripe_billing.send(client, "charge.refunded", charge) == 200
    referral.refresh_from_db()
    assert referral.clawed_back_at is not None
    debits = [
        o
        for o in stripe_billing.server.objects.values()
        if o.get("object") == "customer_balance_transaction" and o["amount"] > 0
    ]
    assert [(d["amount"], d["id"]) for d in debits] == [(199800, referral.clawback_balance_transaction_id)]
    assert BillingEvent.objects.filter(user=referrer, kind="referral_clawed_back").count() == 1


def test_dispute_claws_the_referral_credit_back(stripe_billing, make_user, client_for):
    _, referred, client, sub = _referred_pair(stripe_billing, make_user, client_for)
    invoice = stripe_billing.server.invoice(subscription=sub)
    stripe_billing.send(client, "invoice.paid", invoice)
    charge = stripe_billing.server.charge(invoice=invoice)
    dispute = {"id": "du_1", "object": "dispute", "charge": charge["id"], "amount": charge["amount"]}
    dispute.update(currency="usd", status="needs_response", reason="fraudulent", created=1, livemode=False)
    dispute.update(balance_transactions=[], evidence={}, evidence_details={}, metadata={}, is_charge_refundable=False)
    stripe_billing.server.put(dispute)
    assert stripe_billing.send(client, "charge.dispute.created", dispute) == 200
    assert Referral.objects.get(referred=referred).clawed_back_at is not None


@pytest.mark.parametrize(
    "referrer_email, referred_email, refused",
    [
        ("ann@acme.example", "bob@acme.example", True),  # same company domain
        ("ann.lee@gmail.com", "annlee+2@gmail.com", True),  # same Gmail mailbox
        ("ann@gmail.com", "bob@gmail.com", False),  # a public mail domain proves nothing
        ("ann@acme.example", "bob@other.example", False),
    ],
)
def test_self_referral_by_email(make_user, referrer_email, referred_email, refused):
    from billing.services import referral_code_for

    referrer, referred = make_user(email=referrer_email), make_user(email=referred_email)
    result = referral_record(referred=referred, code=referral_code_for(user=referrer).code)
    assert (result is None) == refused
    assert BillingEvent.objects.filter(user=referrer, kind="referral_refused").exists() == refused


def test_self_referral_with_the_same_card_earns_nothing(stripe_billing, make_user, client_for):
    referrer, referred, client, sub = _referred_pair(stripe_billing, make_user, client_for)
    for user in (referrer, referred):
        stripe_billing.server.card(customer=Customer.objects.get(subscriber=user).id, fingerprint="fpSAMECARD")
    assert stripe_billing.send(client, "invoice.paid", stripe_billing.server.invoice(subscription=sub)) == 200
    referral = Referral.objects.get(referred=referred)
    assert referral.credit_cents == 0 and not referral.stripe_balance_transaction_id
    assert BillingEvent.objects.filter(user=referrer, kind="referral_refused", detail__reason="same card").exists()


def test_dunning_reminds_before_instances_stop(stripe_billing, user, client_for, django_capture_on_commit_callbacks):
    client = client_for(user)
    sub = _subscribe(client, user, stripe_billing, "personal")
    sub["status"] = "past_due"
    invoice = stripe_billing.server.invoice(subscription=sub, status="open")
    stripe_billing.send(client, "invoice.payment_failed", invoice)
    assert dunning_remind() == 0  # three days of grace ahead: not yet
    Subscription.objects.filter(user=user).update(past_due_since=timezone.now() - timedelta(days=2, hours=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert dunning_remind() == 1
        assert dunning_remind() == 0  # once per stage
    alert = Alert.objects.get(user=user, kind="billing")
    assert invoice["hosted_invoice_url"] in alert.message and "stop on" in alert.message


def test_payment_action_required_sends_the_customer_to_pay(
    stripe_billing, user, client_for, django_capture_on_commit_callbacks
):
    client = client_for(user)
    sub = _subscribe(client, user, stripe_billing, "personal")
    invoice = stripe_billing.server.invoice(subscription=sub, status="open")
    with django_capture_on_commit_callbacks(execute=True):
        assert stripe_billing.send(client, "invoice.payment_action_required", invoice) == 200
    alert = Alert.objects.get(user=user, kind="billing")
    assert invoice["hosted_invoice_url"] in alert.message
    assert mail.outbox and invoice["hosted_invoice_url"] in mail.outbox[-1].body


def test_an_event_for_a_customer_stripe_does_not_know_is_answered_200_and_recorded(stripe_billing, client):
    invoice = stripe_billing.server.invoice(
        subscription=stripe_billing.server.subscription(customer="cus_Nobody", price=stripe_billing.price("personal"))
    )
    event = stripe_billing.server.event("invoice.paid", invoice)
    assert stripe_billing.deliver(client, event).status_code == 200
    trigger = WebhookEventTrigger.objects.filter(body__contains=event["id"]).get()
    assert trigger.valid


def test_money_is_integer_minor_units_with_the_currency(stripe_billing, user, client_for, client):
    api = client_for(user)
    plans = {p["code"]: p for p in api.get("/api/billing/plans").json()}
    assert (plans["personal"]["amount_monthly"], plans["personal"]["currency"]) == (4900, "usd")
    assert plans["personal"]["price_monthly"] == 49  # the manual's price, in dollars
    sub = _subscribe(api, user, stripe_billing, "personal")
    invoice = stripe_billing.server.invoice(subscription=sub, amount=4900)
    invoice["currency"] = "jpy"  # a zero-decimal currency: 4900 is ¥4,900
    stripe_billing.send(api, "invoice.paid", invoice)
    row = api.get("/api/billing/invoices").json()[0]
    assert (row["amount_paid"], row["currency"], row["pdf"]) == (4900, "jpy", invoice["invoice_pdf"])
    client.force_login(user)
    page = client.get("/billing/").content.decode()
    assert "4900 JPY" in page and invoice["invoice_pdf"] in page
