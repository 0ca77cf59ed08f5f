"""The manual's 套餐管理 endpoints with the local provider (no payment; the embedded default)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from billing.models import Subscription

pytestmark = pytest.mark.django_db


def test_new_account_is_on_the_trial(api_client):
    body = api_client.get("/api/billing/subscriptions").json()
    assert body["status"] == "trialing" and body["trial"] is True and body["plan"] == "personal"
    assert body["limits"]["max_instances"] == 1 and body["limits"]["paper_only"] is True
    assert timedelta(days=6, hours=23) < parse_datetime(body["trial_ends_at"]) - timezone.now() <= timedelta(days=7)


def test_after_the_trial_there_is_no_plan(api_client, user):
    user.date_joined = timezone.now() - timedelta(days=8)
    user.save()
    body = api_client.get("/api/billing/subscriptions").json()
    assert (body["status"], body["plan"], body["limits"]) == ("none", None, None)


def test_subscribe_yearly(api_client, user):
    response = api_client.post(
        "/api/billing/subscriptions/create", {"plan": "professional", "interval": "year"}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert (body["plan"], body["status"], body["interval"], body["provider"]) == (
        "professional",
        "active",
        "year",
        "local",
    )
    assert body["limits"] == {
        "max_instances": 3,
        "cpu_limit": 2.0,
        "memory_limit": 2048,
        "max_trading_pairs": 5,
        "paper_only": False,
    }
    again = api_client.post("/api/billing/subscriptions/create", {"plan": "enterprise"}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_subscribed"
    assert Subscription.objects.filter(user=user).count() == 1


@pytest.mark.parametrize(
    "path, body, field",
    [
        ("create", {"plan": "gold"}, "plan"),
        ("create", {"plan": "personal", "interval": "weekly"}, "interval"),
        ("create", {"plan": "personal", "coupon": "x"}, "coupon"),
        ("update-plan", {"new_plan": "gold"}, "new_plan"),
        ("update-plan", {}, "new_plan"),
        ("cancel", {"immediately": "maybe"}, "immediately"),
        ("cancel", {}, "immediately"),
    ],
)
def test_bad_requests_name_the_field(api_client, subscribe, user, path, body, field):
    subscribe(user, "professional")
    response = api_client.post(f"/api/billing/subscriptions/{path}", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]


def test_manual_curl_lines_work_as_written(api_client, subscribe, user):
    """`-d '{"new_plan":"enterprise"}'` without a Content-Type, exactly as the manual shows."""
    subscribe(user, "professional")
    upgraded = api_client.post(
        "/api/billing/subscriptions/update-plan",
        '{"new_plan":"enterprise"}',
        content_type="application/x-www-form-urlencoded",
    )
    assert upgraded.status_code == 200 and upgraded.json()["plan"] == "enterprise"
    canceled = api_client.post(
        "/api/billing/subscriptions/cancel", '{"immediately":false}', content_type="application/x-www-form-urlencoded"
    )
    assert canceled.status_code == 200 and canceled.json()["cancel_at_period_end"] is True


def test_nothing_to_change_or_cancel_without_a_plan(api_client):
    for path, body in (("update-plan", {"new_plan": "enterprise"}), ("cancel", {"immediately": True})):
        response = api_client.post(f"/api/billing/subscriptions/{path}", body, format="json")
        assert response.status_code == 409 and response.json()["error"]["code"] == "no_subscription"


def test_stripe_provider_never_grants_without_payment(api_client, settings):
    # Stripe configured but the prices not created yet: a clear error, and no plan without payment.
    settings.QM_BILLING_PROVIDER = "stripe"
    response = api_client.post("/api/billing/subscriptions/create", {"plan": "personal"}, format="json")
    assert response.status_code == 503
    assert "billing_stripe_sync" in response.json()["error"]["message"]
    assert not Subscription.objects.exists()


def test_billing_page_subscribe_change_cancel(client, user):
    client.force_login(user)
    page = client.get("/billing/")
    assert b"Free trial until" in page.content and b"Local billing" in page.content
    client.post("/billing/", {"action": "subscribe", "plan": "personal", "interval": "year"})
    assert Subscription.objects.get(user=user).interval == "year"
    changed = client.post("/billing/", {"action": "change", "plan": "professional"}, follow=True)
    assert b"Plan changed." in changed.content
    canceled = client.post("/billing/", {"action": "cancel"}, follow=True)
    assert b"ends with the current period" in canceled.content
    assert Subscription.objects.get(user=user).cancel_at_period_end is True


def test_tokens_page_shows_the_secret_once(client, user):
    client.force_login(user)
    created = client.post("/accounts/tokens/", {"name": "laptop"}, follow=True)
    secret = created.context["new_token"]
    assert secret.startswith("qm_") and secret.encode() in created.content
    again = client.get("/accounts/tokens/")
    assert secret.encode() not in again.content and b"laptop" in again.content
    token = user.api_tokens.get(name="laptop")
    client.post("/accounts/tokens/", {"revoke": token.pk})
    token.refresh_from_db()
    assert token.revoked_at is not None
