"""The plan catalogue: Plan rows from billing/catalogue.py, their Stripe products and prices, and
the webhook endpoint Stripe posts to."""

from __future__ import annotations

from .. import stripe_gateway
from ..catalogue import PLAN_CATALOGUE, yearly_price_cents
from ..models import Plan


def plan_catalogue_sync(*, plan_model=Plan) -> list[str]:
    """Create or update the Plan rows from the catalogue; idempotent. Returns the codes it changed.

    `plan_model` lets the data migration pass its historical model.
    """
    changed = []
    for entry in PLAN_CATALOGUE:
        values = {k: v for k, v in entry.items() if k != "code"}
        values["price_yearly_cents"] = yearly_price_cents(entry["price_monthly_cents"])
        plan, created = plan_model.objects.get_or_create(code=entry["code"], defaults=values)
        if created:
            changed.append(plan.code)
            continue
        dirty = [
            field
            for field, value in values.items()
            if getattr(plan, field) != plan._meta.get_field(field).to_python(value)
        ]
        if dirty:
            for field in dirty:
                setattr(plan, field, values[field])
            plan.save(update_fields=dirty)
            changed.append(plan.code)
    return changed


def plans_stripe_sync() -> dict[str, tuple[str, str]]:
    """Create or update each plan's Stripe product and prices and remember the price ids; idempotent."""
    result = {}
    for plan in Plan.objects.filter(is_active=True):
        product, month, year = stripe_gateway.product_and_prices_sync(plan=plan, yearly_cents=plan.price_yearly_cents)
        if (plan.stripe_product_id, plan.stripe_price_month_id, plan.stripe_price_year_id) != (product, month, year):
            plan.stripe_product_id, plan.stripe_price_month_id, plan.stripe_price_year_id = product, month, year
            plan.save(update_fields=["stripe_product_id", "stripe_price_month_id", "stripe_price_year_id"])
        result[plan.code] = (month, year)
    return result


def stripe_webhook_endpoint_ensure(*, base_url: str):
    """The endpoint Stripe posts this portal's webhooks to, created once."""
    return stripe_gateway.webhook_endpoint_ensure(base_url=base_url)
