"""The plan catalogue: the manual's prices and limits, served by GET /api/billing/plans."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from billing.models import Plan
from billing.selectors import entitlements_for, plan_get

pytestmark = pytest.mark.django_db


def test_plans_match_the_manual(anon_client):
    response = anon_client.get("/api/billing/plans")
    assert response.status_code == 200
    plans = {p["code"]: p for p in response.json()}
    assert list(plans) == ["personal", "professional", "enterprise"]
    expected = {
        "personal": (49, 1.0, 1024, 1, 1),
        "professional": (199, 2.0, 2048, 5, 3),
        "enterprise": (999, 4.0, 8192, None, None),
    }
    for code, (price, cpu, memory, pairs, instances) in expected.items():
        plan = plans[code]
        assert (plan["price_monthly"], plan["cpu_limit"], plan["memory_limit"]) == (price, cpu, memory)
        assert (plan["max_trading_pairs"], plan["max_instances"]) == (pairs, instances)
        assert plan["price_yearly"] < 12 * price  # yearly billing is discounted
    assert plans["personal"]["name_zh"] == "个人版"
    assert {"ai_strategy", "custom_domain"} <= set(plans["professional"]["features"])
    assert "autoscaling" in plans["enterprise"]["features"]


def test_load_plans_is_idempotent_and_repairs_edits(capsys):
    Plan.objects.filter(code="personal").update(price_monthly_cents=1)
    call_command("load_plans")
    assert "personal" in capsys.readouterr().out
    assert plan_get(code="personal").price_monthly_cents == 4900
    call_command("load_plans")
    assert "none" in capsys.readouterr().out
    assert Plan.objects.count() == 3


def test_entitlements(user, subscribe):
    trial = entitlements_for(user)  # a new account: the no-card trial
    assert (trial.plan.code, trial.trial, trial.max_instances, trial.paper_only) == ("personal", True, 1, True)
    user.date_joined = timezone.now() - timedelta(days=8)
    user.save()
    assert entitlements_for(user).plan is None
    assert entitlements_for(user).max_instances == 0
    subscribe(user, "professional")
    rights = entitlements_for(user)
    assert rights.max_instances == 3
    assert rights.allows_plan(plan_get(code="personal"))
    assert not rights.allows_plan(plan_get(code="enterprise"))
    assert rights.has_feature("custom_domain") and not rights.has_feature("autoscaling")
    subscribe(user, "enterprise")
    assert entitlements_for(user).max_instances is None
