"""Billing against a Stripe API on loopback (localstripe plus recorded payloads, see stripe_server)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest
import stripe
from django.core.management import call_command
from djstripe.models import WebhookEndpoint

from accounts import services as account_services
from billing.models import Plan

from .stripe_server import StripeTestServer, shared_stripe_server


@pytest.fixture(scope="session")
def stripe_server():
    return shared_stripe_server()


@dataclass
class StripeBilling:
    server: StripeTestServer
    endpoint: WebhookEndpoint

    def price(self, plan_code: str, interval: str = "month") -> dict:
        plan = Plan.objects.get(code=plan_code)
        return self.server.objects[plan.stripe_price_year_id if interval == "year" else plan.stripe_price_month_id]

    def deliver(self, client, event: dict, **kwargs):
        return self.server.deliver(client, self.endpoint, event, **kwargs)

    def send(self, client, event_type: str, obj: dict) -> int:
        """Stripe sends a new event about `obj`; returns the endpoint's HTTP status."""
        return self.deliver(client, self.server.event(event_type, obj)).status_code


@pytest.fixture
def stripe_billing(settings, stripe_server, db):
    """The portal configured for Stripe, with products, prices and the webhook endpoint set up by
    the real `billing_stripe_sync` command."""
    stripe_server.reset()
    settings.QM_BILLING_PROVIDER = "stripe"
    settings.STRIPE_SECRET_KEY = settings.STRIPE_TEST_SECRET_KEY = "sk_test_QuantMeshBillingTests0000001"
    settings.STRIPE_LIVE_MODE = False
    settings.QM_PUBLIC_URL = "http://testserver"
    previous_base = stripe.api_base
    stripe.api_base = stripe_server.url
    call_command("billing_stripe_sync", webhook_base_url="http://testserver", stdout=io.StringIO())
    yield StripeBilling(server=stripe_server, endpoint=WebhookEndpoint.objects.get())
    stripe.api_base = previous_base


@pytest.fixture
def client_for(db):
    """An API client for any user, with a real bearer token."""
    from rest_framework.test import APIClient

    def make(user) -> APIClient:
        _, raw = account_services.api_token_create(user=user, name="tests")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        return client

    return make
